"""Fused multi-task path vs the alternatives, side by side in one run, at real model sizes.

Backbones (`--backbone`, repeatable; random weights for the wav2vec2 sizes: speed only):
    default      the served checkpoint (models/default: Conformer-CTC D=144, 6 layers, d_c=32)
    w2v2-base    torchaudio wav2vec2_base:  D=768,  12 layers, 95 M params, d_c=64
    w2v2-large   torchaudio wav2vec2_large: D=1024, 24 layers, 317 M params, d_c=64
Variants (same audio, same run; throughput = audio seconds per wall second):
    backbone             no adapter at all: the upper bound
    fused_mixed          one fused forward, every utterance a different task (slot pool)
    fused_single         one fused forward, one task for all (default backbone only)
    per_task_sequential  group by task, one forward per group (no fused batching)
    per_request_swap     DiskStore read + one forward per utterance (default only)
    peft_lora_mixed      HF PEFT LoRA on the same frozen backbone, mixed-adapter batch via
                         adapter_names; rank 1 on each layer's last FFN projection
How it is timed (load_tests/bench_stats.py): threads pinned (--threads), every shape
warmed up, variants interleaved with the order rotated per repeat, one ratio per
repeat (t_backbone / t_variant, same moment of the machine), repeats until each
ratio's median moves < 2% between halves; min / median / max reported.
Also per backbone: head bytes per task, heads per GiB of slot pool, head load p50/p99
(DiskStore read + decode + validation + write into a device slot, every load a miss).

    .venv/bin/python -m load_tests.bench_fused --quick   # `make bench-quick`
    .venv/bin/python -m load_tests.bench_fused           # full: + w2v2-large, B=64, 3 s/10 s
Writes {"config", "rows", "heads"} to load_tests/results/fused-{quick,full}.json.
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
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadMetadata, HeadRecord
from adapters_store.slot_pool import DeviceSlotPool
from load_tests.bench_stats import interleaved, pin_threads
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.data.manifest import load_audio
from server.models.checkpoint import head_spec, load_model
from server.models.ctc.features import SAMPLE_RATE, pad_features
from server.models.hra import HRAModel

logger = logging.getLogger("load_tests.bench_fused")
VARIANTS = (
    "backbone",
    "fused_mixed",
    "fused_single",
    "per_task_sequential",
    "per_request_swap",
    "peft_lora_mixed",
)
BIG_VARIANTS = ("backbone", "fused_mixed", "per_task_sequential", "peft_lora_mixed")
BACKBONES = {  # name -> (torchaudio factory or None for the checkpoint, d_c, PEFT target)
    "default": (None, None, r".*ffn2\.sequential\.4"),
    "w2v2-base": ("wav2vec2_base", 64, r".*feed_forward\.output_dense"),
    "w2v2-large": ("wav2vec2_large", 64, r".*feed_forward\.output_dense"),
}


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


def build_model(name: str) -> tuple[HRAModel, str]:
    factory, controller_dim, _ = BACKBONES[name]
    if factory is None:
        return load_model(get_settings().model_dir / "model.safetensors")
    from server.models.hf.wav2vec2 import Wav2Vec2Backbone

    torch.manual_seed(0)
    model = HRAModel(Wav2Vec2Backbone(factory), controller_dim).eval()
    return model, f"bench-{name}"  # random weights: no need to hash 1.2 GB


class Bench:
    def __init__(self, backbone: str, max_batch: int, store_dir: Path) -> None:
        self.name = backbone
        self.model, fp = build_model(backbone)
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
        self.only: tuple[str, ...] | None = None  # --variants

    @property
    def variants(self) -> tuple[str, ...]:
        every = VARIANTS if self.name == "default" else BIG_VARIANTS
        return tuple(v for v in every if self.only is None or v in self.only)

    def params(self) -> int:
        return sum(p.numel() for p in self.model.backbone.parameters())

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
                r=1, lora_alpha=1, target_modules=BACKBONES[self.name][2], init_lora_weights=False
            )
            # A copy: PEFT injects LoRA layers into the module it wraps.
            model = get_peft_model(copy.deepcopy(self.model), config, adapter_name="t0")
            for i in range(1, len(self.heads)):
                model.add_adapter(f"t{i}", config)
            model.eval()
            self.peft = model
        return self.peft

    def peft_params_per_task(self) -> int:
        model = self.peft_model()
        return sum(p.numel() for n, p in model.named_parameters() if ".t0." in n)

    def head_stats(self, loads: int) -> dict:
        """Bytes of one linear head, heads per GiB of pool, load p50/p99 (every load a miss)."""
        head_bytes = sum(t.numel() * t.element_size() for t in self.heads[0].tensors.values())
        pool = DeviceSlotPool(self.spec, 1, torch.device("cpu"))  # 1 slot: each load evicts
        times = []
        for i in range(loads):
            task = self.heads[i % len(self.heads)].meta.task_id
            began = time.perf_counter()
            pool.head_batch([self.store.get(task)])
            times.append(time.perf_counter() - began)
        times.sort()
        return {
            "backbone": self.name,
            "hidden_dim": self.spec.hidden_dim,
            "controller_dim": self.spec.controller_dim,
            "layers": self.spec.num_layers,
            "backbone_params_m": round(self.params() / 1e6, 1),
            "head_bytes": head_bytes,
            "heads_per_gib": (1 << 30) // head_bytes,
            "peft_lora_params_per_task": self.peft_params_per_task(),
            "load_p50_ms": round(statistics.median(times) * 1000, 3),
            "load_p99_ms": round(times[int(0.99 * (len(times) - 1))] * 1000, 3),
        }


def measure(
    bench: Bench, feats: list[torch.Tensor], min_repeats: int, max_repeats: int, clock: str
):
    """Every variant of `bench` on one batch, interleaved (load_tests/bench_stats.py)."""
    with torch.inference_mode():
        return interleaved(
            {v: (lambda v=v: bench.run(v, feats)) for v in bench.variants},
            baseline="backbone",
            min_repeats=min_repeats,
            max_repeats=max_repeats,
            clock=clock,
        )


def plan_for(backbone: str, mode: str) -> list[tuple[str, int]]:
    if mode == "smoke":
        return [("fsdd", 1), ("fsdd", 8)]
    batches = [1, 8, 32] + ([64] if mode == "full" and backbone == "default" else [])
    plan = [("fsdd", b) for b in batches]
    if mode == "full" and backbone == "default":
        plan += [("3s", 32), ("10s", 32)]
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (`make bench-quick`)")
    parser.add_argument("--smoke", action="store_true", help="seconds: B in {1, 8}, CI only")
    parser.add_argument(
        "--backbone", action="append", choices=list(BACKBONES), help="repeatable; default: by mode"
    )
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (pinned)")
    parser.add_argument("--max-repeats", type=int, help="bound on repeats per shape")
    parser.add_argument("--batch", type=int, action="append", help="only these B (FSDD clips)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="a subset (+ backbone)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    threads = pin_threads(args.threads)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    backbones = (
        args.backbone
        or {
            "smoke": ["default"],
            "quick": ["default", "w2v2-base"],
            "full": ["default", "w2v2-base", "w2v2-large"],
        }[mode]
    )
    min_repeats, max_repeats = {"smoke": (1, 1), "quick": (4, 10), "full": (6, 20)}[mode]
    max_repeats = args.max_repeats or max_repeats
    min_repeats = min(min_repeats, max_repeats)
    out = args.out or REPO_ROOT / "load_tests" / "results" / f"fused-{mode}.json"
    rows, heads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in backbones:
            plan = plan_for(name, mode)
            if args.batch:
                plan = [("fsdd", b) for b in args.batch]
            bench = Bench(name, max(b for _, b in plan), Path(tmp) / name)
            if args.variants:
                bench.only = ("backbone", *(v for v in args.variants if v != "backbone"))
            heads.append(bench.head_stats(loads=20 if mode == "smoke" else 200))
            for length, b in tqdm(plan, desc=f"bench {name}"):
                clips = make_clips(length, b)
                feats = [bench.model.backbone.featurize(c) for c in clips]
                audio_s = sum(c.shape[0] for c in clips) / SAMPLE_RATE
                reps = max_repeats if length != "10s" else max(min_repeats, max_repeats // 2)
                timings = measure(bench, feats, min_repeats, reps, args.clock)
                for variant, t in timings.items():
                    rows.append(
                        {
                            "backbone": name,
                            "length": length,
                            "batch": b,
                            "distinct_tasks": 1 if variant in ("backbone", "fused_single") else b,
                            "audio_s_per_s": round(audio_s / t.seconds_median, 2),
                            **t.as_dict(),
                        }
                    )
                partial = {"config": {"mode": mode, "partial": True}, "rows": rows, "heads": heads}
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(partial, indent=2))  # a long run keeps what it has
    print(
        f"threads={threads}, clock={args.clock}; "
        "ratio to backbone-only: median [min, max] over repeats (n)"
    )
    print("| backbone | length | B | variant | audio s/s | ratio median [min, max] (n) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['length']} | {r['batch']} | {r['variant']} | "
            f"{r['audio_s_per_s']} | {r['ratio_median']:.3f} [{r['ratio_min']:.3f}, "
            f"{r['ratio_max']:.3f}] ({r['repeats']}{'' if r['stable'] else ', unstable'}) |"
        )
    print("| backbone | D | L | params M | head bytes | heads/GiB | PEFT r=1 params | load ms |")
    print("|---|---|---|---|---|---|---|---|")
    for h in heads:
        print(
            f"| {h['backbone']} | {h['hidden_dim']} | {h['layers']} | {h['backbone_params_m']} | "
            f"{h['head_bytes']} | {h['heads_per_gib']} | {h['peft_lora_params_per_task']} | "
            f"p50 {h['load_p50_ms']} / p99 {h['load_p99_ms']} |"
        )
    config = {"mode": mode, "threads": threads, "clock": args.clock, "backbones": backbones}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config, "rows": rows, "heads": heads}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
