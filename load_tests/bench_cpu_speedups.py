"""CPU serving speed-ups for the frozen backbone, at equal WER (issue 14 item 4).

Variants of the served default model (models/default); the controller and the
heads stay float32 in every one, only the backbone's layers change:
    fp32        as served (the baseline)
    int8        torch.ao dynamic int8 quantization of the backbone's nn.Linear layers
                (weights int8 per tensor, activations quantized per batch at run time)
    bf16        the backbone's layers under CPU autocast to bfloat16 (this CPU reports
                avx512_bf16; oneDNN uses it), their outputs cast back to float32
Speed: a B=32 mixed batch (32 FSDD test clips, each its own trained task's linear
head, round robin over the model's heads) and B=1, timed interleaved
(load_tests/bench_stats.py). WER: every task's test set (synthetic domains + FSDD
takes 30-39), greedy, with the task's trained linear head, as `hra evaluate`.
torch.compile was measured before (docs/benchmarks.md: 1.95x at B=1, 0.80x at
B=32, minutes of compiling per new shape) and is not repeated here.

    .venv/bin/python -m load_tests.bench_cpu_speedups [--data-dir DIR]
Writes load_tests/results/cpu-speedups.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from adapters_store.disk_store import DiskStore
from adapters_store.head_batch import HeadBatch
from load_tests.bench_fused import make_clips
from load_tests.bench_stats import interleaved, pin_threads
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.models.checkpoint import load_model
from server.models.ctc.features import pad_features
from server.models.hra import HRAModel
from server.models.precision import apply_backbone_precision
from server.training.data import FeatureSet
from server.training.evaluate import test_utterances, wers

logger = logging.getLogger("load_tests.bench_cpu_speedups")
VARIANTS = ("fp32", "int8", "bf16")


def converted(model: HRAModel, precision: str) -> HRAModel:
    """A copy with the backbone as HRA_BACKBONE_PRECISION=precision serves it."""
    return apply_backbone_precision(copy.deepcopy(model), precision, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, help="synthetic test sets (made if absent)")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-repeats", type=int, default=12)
    parser.add_argument("--skip-wer", action="store_true")
    parser.add_argument(
        "--fsdd-only", action="store_true", help="WER on the FSDD tasks only (no synthesis)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests/results/cpu-speedups.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    threads = pin_threads(args.threads)
    settings = get_settings()
    base, _ = load_model(settings.model_dir / "model.safetensors")
    models = {"fp32": base, "int8": converted(base, "int8"), "bf16": converted(base, "bfloat16")}
    store = DiskStore(settings.model_dir / "heads")
    heads = [store.get(t) for t in sorted(store.task_ids())]

    speed = {}
    for b in (1, 32):
        feats = [base.backbone.featurize(c) for c in make_clips("fsdd", b)]
        inputs, lengths = pad_features(feats)
        batch = HeadBatch.from_heads([("linear", heads[i % len(heads)].tensors) for i in range(b)])
        with torch.inference_mode():
            timings = interleaved(
                {v: (lambda m=m, a=(inputs, lengths, batch): m(*a)) for v, m in models.items()},
                baseline="fp32",
                min_repeats=min(6, args.max_repeats),
                max_repeats=args.max_repeats,
                clock=args.clock,
            )
            ref = models["fp32"](inputs, lengths, batch)[0]
            diffs = {
                v: float((m(inputs, lengths, batch)[0] - ref).abs().max())
                for v, m in models.items()
            }
        speed[b] = {
            v: {**t.as_dict(), "max_abs_logit_diff": round(diffs[v], 5)} for v, t in timings.items()
        }

    wer = {}
    if not args.skip_wer:
        data_dir = args.data_dir or settings.work_dir / "default" / "data"
        if args.fsdd_only:
            utterances = load_fsdd(settings.fsdd_root, TEST_TAKES)
        else:
            utterances = test_utterances(data_dir, settings.fsdd_root)
        data = FeatureSet.build(utterances, base.backbone.featurize, desc="test features")
        for variant, model in models.items():
            per_task = {}
            for task_index, task in enumerate(tqdm(data.task_ids, desc=f"WER {variant}")):
                idx = [i for i, t in enumerate(data.tasks) if t == task_index]
                feats = [data.features[i] for i in idx]
                refs = [data.texts[i] for i in idx]
                with torch.inference_mode():
                    per_task[task] = wers(model, feats, refs, store.get(task), ())[0]
            wer[variant] = {
                "mean": round(sum(per_task.values()) / len(per_task), 4),
                "per_task": {k: round(v, 4) for k, v in per_task.items()},
            }

    print(f"threads={threads}; speed = t_fp32 / t_variant, median [min, max] over repeats (n)")
    print("| variant | B=1 speed | B=32 speed | max |logit diff| B=32 | mean WER (linear heads) |")
    print("|---|---|---|---|---|")
    for v in VARIANTS:
        cells = []
        for b in (1, 32):
            t = speed[b][v]
            spread = f"[{t['ratio_min']:.3f}, {t['ratio_max']:.3f}]"
            cells.append(f"{t['ratio_median']:.3f} {spread} ({t['repeats']})")
        w = f"{100 * wer[v]['mean']:.2f}%" if wer else "-"
        print(f"| {v} | {cells[0]} | {cells[1]} | {speed[32][v]['max_abs_logit_diff']} | {w} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "threads": threads,
                "clock": args.clock,
                "fsdd_only": args.fsdd_only,
                "speed": speed,
                "wer": wer,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
