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
