"""Fused multi-task path vs the alternatives, side by side in one run.

Variants (same audio, same run; throughput = audio seconds per wall second):
    backbone             no adapter at all: the upper bound
    fused_mixed          one fused forward, every utterance a different task (slot pool)
    fused_single         one fused forward, one task for all
    per_task_sequential  group by task, one forward per group (no fused batching)
    per_request_swap     load the head from the DiskStore, run one utterance, next
    peft_lora_mixed      HF PEFT LoRA on the same frozen backbone, mixed-adapter batch
                         via adapter_names; rank 1 on each layer's last FFN projection
                         (4,320 params per task vs our linear head's 4,608)

    .venv/bin/python -m load_tests.bench_fused --quick   # `make bench-quick`, < 2 min
    .venv/bin/python -m load_tests.bench_fused           # full: more repeats
Writes a list of records {variant, batch, distinct_tasks, audio_s_per_s,
ratio_to_backbone, length} to load_tests/results/fused-{quick,full}.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadMetadata, HeadRecord
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.data.manifest import load_audio
from server.model.adapters import HeadBatch
from server.model.checkpoint import head_spec, load_model
from server.model.features import SAMPLE_RATE, pad_features
from server.slot_pool import DeviceSlotPool

logger = logging.getLogger("load_tests.bench_fused")
VARIANTS = (
    "backbone",
    "fused_mixed",
    "fused_single",
    "per_task_sequential",
    "per_request_swap",
    "peft_lora_mixed",
)


def make_clips(length: str, count: int) -> list[torch.Tensor]:
    """FSDD test clips as they are ("fsdd", ~0.5 s), or concatenated to >= 3 s / 10 s."""
    waves = [load_audio(u.audio) for u in load_fsdd(get_settings().fsdd_root, TEST_TAKES)]
    if length == "fsdd":
        return waves[:count]
    target = {"3s": 3.0, "10s": 10.0}[length] * SAMPLE_RATE
    clips, i = [], 0
    for _ in range(count):
        parts = []
        while sum(p.shape[0] for p in parts) < target:
            parts.append(waves[i % len(waves)])
            i += 1
        clips.append(torch.cat(parts)[: int(target)])
    return clips


class Bench:
    def __init__(self, max_batch: int, store_dir: Path) -> None:
        self.model, fp = load_model(get_settings().model_dir / "model.safetensors")
        self.spec = head_spec(self.model, fp)
        g = torch.Generator().manual_seed(0)
        self.heads = [
            HeadRecord(
                HeadMetadata(f"task-{i}", "linear", fp, version=1),
                {
                    "V": torch.randn(self.spec.hidden_dim, self.spec.controller_dim, generator=g)
                    * 0.02
                },
            )
            for i in range(max_batch)
        ]
        self.store = DiskStore(store_dir)
        for head in self.heads:
            self.store.put(head)
        self.slots = DeviceSlotPool(self.spec, max_batch, torch.device("cpu"))
        self.peft = None

    def _forward(self, feats, heads: HeadBatch | None):
        inputs, lengths = pad_features(feats)
        return self.model(inputs, lengths, heads)

    def run(self, variant: str, feats: list[torch.Tensor]) -> None:
        b = len(feats)
        if variant == "backbone":
            self._forward(feats, None)
        elif variant == "fused_mixed":
            self._forward(feats, self.slots.head_batch(self.heads[:b]))
        elif variant == "fused_single":
            self._forward(feats, self.slots.head_batch([self.heads[0]] * b))
        elif variant == "per_task_sequential":  # every task distinct: one forward each
            for f, head in zip(feats, self.heads[:b]):
                self._forward([f], self.slots.head_batch([head]))
        elif variant == "per_request_swap":
            for f, head in zip(feats, self.heads[:b]):
                record = self.store.get(head.meta.task_id)
                self._forward([f], HeadBatch.from_heads([("linear", record.tensors)]))
        elif variant == "peft_lora_mixed":
            inputs, lengths = pad_features(feats)
            self.peft_model()(inputs, lengths, adapter_names=[f"t{i}" for i in range(b)])
        else:
            raise ValueError(variant)

    def peft_model(self):
        if self.peft is None:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=1, lora_alpha=1, target_modules=r".*ffn2\.sequential\.4", init_lora_weights=False
            )
            # A copy: PEFT injects LoRA layers into the module it wraps.
            model = get_peft_model(copy.deepcopy(self.model), config, adapter_name="t0")
            for i in range(1, len(self.heads)):
                model.add_adapter(f"t{i}", config)
            model.eval()
            self.peft = model
        return self.peft


def measure(bench: Bench, feats, repeats: int) -> dict[str, float]:
    """Median wall seconds of one call per variant, after one warm-up call each.

    Variants take turns within every repeat, so a noisy moment on a shared
    machine lands on all of them alike instead of on one variant's block.
    """
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with torch.inference_mode():
        for variant in VARIANTS:
            bench.run(variant, feats)
        for _ in range(repeats):
            for variant in VARIANTS:
                began = time.perf_counter()
                bench.run(variant, feats)
                times[variant].append(time.perf_counter() - began)
    return {v: statistics.median(t) for v, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (`make bench-quick`)")
    parser.add_argument("--smoke", action="store_true", help="seconds: B in {1, 8}, CI only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    batches = [1, 8] if args.smoke else [1, 8, 32, 64]
    repeats = {"smoke": 1, "quick": 3, "full": 7}[mode]
    plan = [("fsdd", b) for b in batches]
    if not args.smoke:
        plan += [("3s", 32), ("10s", 32)]
    out = args.out or REPO_ROOT / "load_tests" / "results" / f"fused-{mode}.json"
    torch.manual_seed(0)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(max(batches), Path(tmp))
        for length, b in tqdm(plan, desc="bench"):
            clips = make_clips(length, b)
            feats = [bench.model.backbone.featurize(c) for c in clips]
            audio_s = sum(c.shape[0] for c in clips) / SAMPLE_RATE
            reps = max(1, repeats // 2) if length == "10s" else repeats
            seconds = measure(bench, feats, reps)
            for variant in VARIANTS:
                records.append(
                    {
                        "variant": variant,
                        "batch": b,
                        "distinct_tasks": 1 if variant in ("backbone", "fused_single") else b,
                        "audio_s_per_s": round(audio_s / seconds[variant], 2),
                        "ratio_to_backbone": round(seconds["backbone"] / seconds[variant], 3),
                        "length": length,
                    }
                )
    print(f"| length | B | {' | '.join(VARIANTS)} |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for length, b in plan:
        rows = {r["variant"]: r for r in records if r["batch"] == b and r["length"] == length}
        cells = " | ".join(
            f"{rows[v]['audio_s_per_s']} ({rows[v]['ratio_to_backbone']}x)" for v in VARIANTS
        )
        print(f"| {length} | {b} | {cells} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
