"""One way every load test and benchmark reports: a Markdown table, and JSON."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(result: dict, out: Path) -> None:
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


def write_table(rows: list[dict], out: Path) -> None:
    """Several runs with the same keys: one table row each, JSON list."""
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")
