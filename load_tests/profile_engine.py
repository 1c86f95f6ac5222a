"""Where the fused forward spends its time, and whether torch.compile pays.

torch.profiler over the fused mixed-task forward (every utterance its own
head) at B=1 and B=32 on FSDD clips and 3 s clips: the top operators by self
CPU time. With --compile, the same batches timed eager vs
torch.compile(dynamic=True) side by side, compile time reported apart.

    .venv/bin/python -m load_tests.profile_engine             # profile, ~1 min
    .venv/bin/python -m load_tests.profile_engine --compile   # + compile trial, ~5 min
Writes load_tests/results/profile.json (and profile-compile.json).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from load_tests.bench_fused import Bench, make_clips
from load_tests.report import write_table
from server.config import REPO_ROOT

SHAPES = (("fsdd", 1), ("fsdd", 32), ("3s", 32))


def top_ops(bench: Bench, feats: list[torch.Tensor], repeats: int, limit: int = 8) -> list[dict]:
    bench.run("fused_mixed", feats)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            bench.run("fused_mixed", feats)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {"op": e.key, "self_pct": round(100 * e.self_cpu_time_total / total, 1), "calls": e.count}
        for e in events[:limit]
    ]


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def compile_trial(bench: Bench, batches: dict, repeats: int) -> list[dict]:
    eager = {
        key: median_ms(lambda f=f: bench.run("fused_mixed", f), repeats)
        for key, f in batches.items()
    }
    bench.model.forward = torch.compile(bench.model.forward, dynamic=True)
    rows = []
    for (length, b), feats in batches.items():
        began = time.perf_counter()
        bench.run("fused_mixed", feats)  # compiles (or recompiles for this shape)
        first = time.perf_counter() - began
        compiled = median_ms(lambda f=feats: bench.run("fused_mixed", f), repeats)
        rows.append(
            {
                "length": length,
                "batch": b,
                "eager_ms": round(eager[(length, b)], 1),
                "compiled_ms": round(compiled, 1),
                "speedup": round(eager[(length, b)] / compiled, 2),
                "first_call_s": round(first, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests" / "results" / "profile.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench("default", 32, Path(tmp))
        batches = {}
        for length, b in SHAPES:
            clips = make_clips(length, b)
            batches[(length, b)] = [bench.model.backbone.featurize(c) for c in clips]
        rows = []
        with torch.inference_mode():
            for (length, b), feats in batches.items():
                for rank, op in enumerate(top_ops(bench, feats, args.repeats), 1):
                    rows.append({"length": length, "batch": b, "rank": rank, **op})
            trial = compile_trial(bench, batches, args.repeats) if args.compile else None
    write_table(rows, args.out)
    if trial:
        write_table(trial, args.out.with_name(f"{args.out.stem}-compile.json"))


if __name__ == "__main__":
    main()
