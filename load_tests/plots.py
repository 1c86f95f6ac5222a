"""PNG plots for docs/benchmarks.md from the JSON the benchmarks wrote.

.venv/bin/python -m load_tests.plots
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from server.config import REPO_ROOT  # noqa: E402

RESULTS = REPO_ROOT / "load_tests" / "results"
DOCS = REPO_ROOT / "docs"


def throughput_vs_batch(source: Path, out: Path) -> None:
    data = json.loads(source.read_text())
    rows_in = data["rows"] if isinstance(data, dict) else data  # older files: a bare list
    records = [
        r for r in rows_in if r["length"] == "fsdd" and r.get("backbone", "default") == "default"
    ]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in dict.fromkeys(r["variant"] for r in records):
        rows = sorted((r for r in records if r["variant"] == variant), key=lambda r: r["batch"])
        ax.plot(
            [r["batch"] for r in rows],
            [r["audio_s_per_s"] for r in rows],
            marker="o",
            label=variant,
        )
    ax.set(
        xscale="log",
        xlabel="batch size (utterances, each its own task)",
        ylabel="audio seconds per wall second",
        title="Throughput vs batch size (FSDD clips)",
    )
    ax.set_xticks([1, 8, 32, 64], labels=["1", "8", "32", "64"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def latency_vs_users(source: Path, out: Path) -> None:
    runs = json.loads(source.read_text())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for batch in sorted({r["max_batch_size"] for r in runs}):
        rows = sorted((r for r in runs if r["max_batch_size"] == batch), key=lambda r: r["users"])
        for pct, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            ax.plot(
                [r["users"] for r in rows],
                [r[pct] / 1000 for r in rows],
                style,
                marker="o",
                label=f"max_batch_size={batch} {pct[:3]}",
            )
    ax.set(
        xlabel="concurrent users",
        ylabel="latency (s)",
        title="Latency percentiles vs concurrency (1-3 s clips)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    fused = next(
        (RESULTS / n for n in ("fused-full.json", "fused-quick.json") if (RESULTS / n).exists()),
        None,
    )
    if fused:
        throughput_vs_batch(fused, DOCS / "throughput-vs-batch.png")
    if (RESULTS / "load-batching.json").exists():
        latency_vs_users(RESULTS / "load-batching.json", DOCS / "latency-vs-users.png")


if __name__ == "__main__":
    main()
