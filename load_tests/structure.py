"""The code's shape, measured: rooms, arrows that run back up, cycles, biggest files and
the most complex functions. Prints a table and writes JSON.

    python -m load_tests.structure [--root DIR] [--json load_tests/results/structure.json]

Rooms are the packages under server/ plus adapters_store/ and kernels/ (a module at the
top of server/ is a room of its own). Layers, top to bottom, follow the one-way rule
api -> serving -> batcher/engine -> models/kernels; an import from a lower layer to a
higher one is an arrow that runs back up.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

# Layer of each room: an import must go to the same or a larger number. Old names
# (model, streaming, service, ...) are placed where their concept sits, so a tree
# before and after a regrouping is measured by one rule.
LAYERS = {
    "cli": 0,
    "api": 1,
    "runtime": 1,
    "live": 2,
    "streaming": 2,
    "jobs": 2,
    "service": 3,
    "serving": 3,
    "discovery": 3,
    "seeding": 3,
    "longform": 4,
    "training": 4,
    "batcher": 5,
    "admission": 5,
    "engine": 6,
    "length_buckets": 6,
    "slot_pool": 6,
    "models": 7,
    "model": 7,
    "data": 7,
    "audio": 8,
    "metrics": 8,
    "busiest_tasks": 8,
    "observability": 8,
    "bounded_cache": 9,
    "allocator": 9,
    "log_safety": 9,
    "adapters_store": 9,
    "kernels": 10,
    "auth": 9,
    "config": 10,
    "errors": 10,
}
BRANCHES = (
    ast.If,
    ast.For,
    ast.While,
    ast.Try,
    ast.IfExp,
    ast.BoolOp,
    ast.match_case,
    ast.ExceptHandler,
    ast.comprehension,
    ast.AsyncFor,
    ast.With,
    ast.AsyncWith,
)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("adapters_store", "kernels"):
        return parts[0]
    if parts[0] == "server" and len(parts) > 1:
        return parts[1]
    return None


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in ("server", "adapters_store", "kernels"):
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(tree: ast.AST, known: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in known:
                out.add(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def measure(root: Path) -> dict:
    known = modules(root)
    graph, sizes, functions = {}, {}, []
    for name, path in known.items():
        text = path.read_text()
        tree = ast.parse(text)
        sizes[str(path.relative_to(root))] = text.count("\n")
        graph[name] = {m for m in imports(tree, known) if m != name}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                branches = sum(isinstance(n, BRANCHES) for n in ast.walk(node))
                length = node.end_lineno - node.lineno + 1
                functions.append((branches, length, f"{path.relative_to(root)}:{node.name}"))
    rooms = {room_of(m) for m in known} - {None, "__init__"}
    flat = sorted(r for r in rooms if (root / "server" / f"{r}.py").exists())
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if LAYERS.get(room_of(a), 99) > LAYERS.get(room_of(b), 99)
    )
    unplaced = sorted(r for r in rooms if r not in LAYERS)
    functions.sort(reverse=True)
    return {
        "modules": len(known),
        "rooms": len(rooms),
        "flat_modules_in_server": len(flat),
        "arrows_back_up": upward,
        "import_cycles": cycles(graph),
        "unplaced_rooms": unplaced,
        "biggest_files": sorted(sizes.items(), key=lambda kv: -kv[1])[:8],
        "most_complex_functions": [
            {"function": f, "branches": b, "lines": n} for b, n, f in functions[:8]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = measure(args.root)
    print(
        f"modules {report['modules']}, rooms {report['rooms']}, "
        f"flat modules in server/ {report['flat_modules_in_server']}"
    )
    print(f"arrows back up: {len(report['arrows_back_up'])}")
    for arrow in report["arrows_back_up"]:
        print(f"  {arrow}")
    print(f"import cycles: {len(report['import_cycles'])}")
    print("biggest files:")
    for path, lines in report["biggest_files"]:
        print(f"  {lines:5d}  {path}")
    print("most complex functions (branches, lines):")
    for f in report["most_complex_functions"]:
        print(f"  {f['branches']:4d} {f['lines']:5d}  {f['function']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
