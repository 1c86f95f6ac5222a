"""Length buckets in the engine, and what batching can buy at all, side by side.

The real serving path (server.serving.engine.Engine: features, slot pool, fused forward,
decoding) on 32 mixed-task clips of uniform 1-3 s (joined FSDD test speech), run
as one pass padded to the longest, as the length buckets the engine plans, and
one clip at a time (what a server with max_batch_size=1 does). All take turns
in every repeat; medians.

Then the bound on what dynamic batching can buy at these lengths: a pool of
64 such clips run in consecutive batches of 1, 8, 16, 32 and 64 (length
buckets on), sizes taking turns: time per clip and speed over batches of one.
A server cannot beat its engine's ratio at the batch sizes it forms.

    .venv/bin/python -m load_tests.bench_buckets            # ~40 s
Writes load_tests/results/buckets.json and batch-bound.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from adapters_store.head_format import HeadMetadata, HeadRecord
from adapters_store.slot_pool import DeviceSlotPool
from load_tests.bench_fused import make_clips
from load_tests.report import write_table
from server.audio.reading import Audio
from server.config import REPO_ROOT, get_settings
from server.models.checkpoint import head_spec, load_model
from server.models.ctc.features import SAMPLE_RATE
from server.models.ctc.recognizer import CtcRecognizer
from server.models.length_buckets import CPU_FORWARD_OVERHEAD_FRAMES, NEVER_SPLIT
from server.serving.engine import Engine, EngineInput


def mixed_batch(model, fp, size: int, seed: int = 0) -> list[EngineInput]:
    """`size` clips of uniform 1-3 s, each with its own (random) linear head."""
    waves = make_clips("fsdd", 300)
    rng = np.random.default_rng(seed)
    spec = head_spec(model, fp)
    g = torch.Generator().manual_seed(seed)
    batch, i = [], 0
    for b in range(size):
        target = int(rng.uniform(1.0, 3.0) * SAMPLE_RATE)
        parts = []
        while sum(p.shape[0] for p in parts) < target:
            parts.append(waves[i % len(waves)])
            i += 1
        head = HeadRecord(
            HeadMetadata(f"task-{b}", "linear", fp, version=1),
            {"V": torch.randn(spec.hidden_dim, spec.controller_dim, generator=g) * 0.02},
        )
        batch.append(EngineInput(Audio(torch.cat(parts)[:target], SAMPLE_RATE), head))
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "load_tests/results/buckets.json")
    parser.add_argument(
        "--bound-out", type=Path, default=REPO_ROOT / "load_tests/results/batch-bound.json"
    )
    args = parser.parse_args()

    model, fp = load_model(get_settings().model_dir / "model.safetensors")
    sizes = sorted({1, *args.sizes})
    pool = mixed_batch(model, fp, max(args.batch, *sizes))  # its first clips are `batch`
    slots = DeviceSlotPool(head_spec(model, fp), len(pool), torch.device("cpu"))
    engines = {
        "one_pass": Engine(CtcRecognizer(model), slots, forward_overhead_frames=NEVER_SPLIT),
        "buckets": Engine(
            CtcRecognizer(model), slots, forward_overhead_frames=CPU_FORWARD_OVERHEAD_FRAMES
        ),
    }
    batch = pool[: args.batch]
    audio_s = sum(item.audio.seconds for item in batch)
    runs = {
        name: (lambda e=engine: e.run(batch).forward_passes) for name, engine in engines.items()
    }
    runs["one_by_one"] = lambda: sum(engines["buckets"].run([x]).forward_passes for x in batch)
    times: dict[str, list[float]] = {name: [] for name in runs}
    passes = {name: run() for name, run in runs.items()}
    for _ in range(args.repeats):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    one_pass = statistics.median(times["one_pass"])
    rows = [
        {
            "variant": name,
            "batch": args.batch,
            "forward_passes": passes[name],
            "median_ms": round(1000 * statistics.median(times[name]), 1),
            "audio_s_per_s": round(audio_s / statistics.median(times[name]), 1),
            "speed_vs_one_pass": round(one_pass / statistics.median(times[name]), 2),
        }
        for name in runs
    ]
    write_table(rows, args.out)
    write_table(
        batch_size_bound(engines["buckets"], pool, sizes, args.repeats),
        args.bound_out,
    )


def batch_size_bound(
    engine: Engine, clips: list[EngineInput], sizes: list[int], repeats: int
) -> list[dict]:
    """All `clips` in consecutive batches of each size (sizes[0] == 1), sizes taking turns."""
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            began = time.perf_counter()
            for start in range(0, len(clips), size):
                engine.run(clips[start : start + size])
            times[size].append(time.perf_counter() - began)
    audio_s = sum(item.audio.seconds for item in clips)
    one = statistics.median(times[1])
    return [
        {
            "batch": size,
            "clips": len(clips),
            "ms_per_clip": round(1000 * statistics.median(times[size]) / len(clips), 2),
            "audio_s_per_s": round(audio_s / statistics.median(times[size]), 1),
            "speed_vs_batch_1": round(one / statistics.median(times[size]), 2),
        }
        for size in sizes
    ]


if __name__ == "__main__":
    main()
