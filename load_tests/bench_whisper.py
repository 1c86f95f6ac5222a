"""Whisper tiny.en with per-utterance heads vs plain Whisper, PEFT LoRA and ctranslate2.

Every variant transcribes the same real speech (FSDD test clips, 16 kHz) end to end:
log-mel features, the encoder, batched greedy decoding (no timestamps, <= 224 tokens).
    base_only            our torch Whisper, no heads (server/models/whisper/decoding.py)
    fused_mixed          one fused encoder pass, every utterance its own task (32 distinct
                         linear heads from a slot pool), then the shared batched decoder
    per_task_sequential  one transcribe call per utterance with its head
    peft_lora_mixed      HF PEFT LoRA (rank 1 on every encoder layer's fc2) on a copy of the
                         same encoder, mixed-adapter batch via adapter_names, same decoder
    ctranslate2          the ctranslate2 runtime (what faster-whisper runs) on the same
                         model.bin, float32, same mel windows, greedy: the speed anchor
    ctranslate2_int8     the same with int8 weights (faster-whisper's usual CPU setting)
Window `--window pad` (default): every clip is Whisper's 30 s window, as ctranslate2;
`--window cut`: our torch variants run the window models/whisper-tiny-en serves in (clip +
8 s margin), ctranslate2 still its 30 s window (what a faster-whisper user runs).
Heads are random at 1e-3 scale so transcripts (hence decode steps) stay those of plain
Whisper: the table reports tokens decoded per variant, so equal decode work is checked,
not assumed. Timing as load_tests/bench_fused.py (load_tests/bench_stats.py).

    .venv/bin/python -m load_tests.bench_whisper --quick   # part of `make bench-quick`
Writes load_tests/results/whisper-{quick,full}.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from adapters_store.head_format import HeadMetadata, HeadRecord
from adapters_store.slot_pool import DeviceSlotPool
from load_tests.bench_fused import make_clips
from load_tests.bench_stats import interleaved, paired_ratio, pin_threads
from server.config import REPO_ROOT
from server.models.checkpoint import head_spec
from server.models.hra import HRAModel
from server.models.registry import CONTROLLER_FILE
from server.models.whisper.decoding import batch_features, decode, transcribe
from server.models.whisper.model import load_whisper
from server.models.whisper.weights import TINY_EN_DIR, WeightsManifest, locate

logger = logging.getLogger("load_tests.bench_whisper")
VARIANTS = (
    "base_only",
    "fused_mixed",
    "per_task_sequential",
    "peft_lora_mixed",
    "ctranslate2",
    "ctranslate2_int8",
)
MAX_TOKENS = 224


class WhisperBench:
    def __init__(self, max_batch: int, threads: int, window: str = "pad") -> None:
        import ctranslate2

        self.whisper = load_whisper(TINY_EN_DIR, window)  # type: ignore[arg-type]
        manifest = json.loads((TINY_EN_DIR / "manifest.json").read_text())
        self.hra = HRAModel(self.whisper.encoder, int(manifest["controller_dim"])).eval()
        self.hra.controller.load_state_dict(load_file(str(TINY_EN_DIR / CONTROLLER_FILE)))
        spec = head_spec(self.hra, "bench-whisper")
        g = torch.Generator().manual_seed(0)
        self.heads = [
            HeadRecord(
                HeadMetadata(f"task-{i}", "linear", "bench-whisper", version=1),
                {"V": torch.randn(spec.hidden_dim, spec.controller_dim, generator=g) * 1e-3},
            )
            for i in range(max_batch)
        ]
        self.slots = DeviceSlotPool(spec, max_batch, torch.device("cpu"))
        root = str(locate(WeightsManifest.load(TINY_EN_DIR)).root)
        self.ct2 = ctranslate2.models.Whisper(
            root, device="cpu", compute_type="float32", intra_threads=threads
        )
        self.ct2_int8 = ctranslate2.models.Whisper(
            root, device="cpu", compute_type="int8", intra_threads=threads
        )
        self.prompt = self.whisper.tokenizer.prompt(timestamps=False)
        self.peft = self._peft_encoder(max_batch)
        self.tokens: dict[str, int] = {}

    def _peft_encoder(self, adapters: int):
        """A copy of the encoder whose fc2 are nn.Linear (what PEFT wraps), r=1 LoRA each."""
        from peft import LoraConfig, get_peft_model

        encoder = copy.deepcopy(self.whisper.encoder)
        for layer in encoder.layers:
            old = layer.mlp.fc2
            new = nn.Linear(old.weight.shape[1], old.weight.shape[0])
            new.weight.data.copy_(old.weight)
            new.bias.data.copy_(old.bias)
            layer.mlp.fc2 = new.requires_grad_(False)
        config = LoraConfig(
            r=1, lora_alpha=1, target_modules=r".*mlp\.fc2", init_lora_weights=False
        )
        model = get_peft_model(encoder, config, adapter_name="t0")
        for i in range(1, adapters):
            model.add_adapter(f"t{i}", config)
        return model.eval()

    def _ct2(self, model, waves) -> list[list[int]]:
        import ctranslate2

        enc = self.whisper.encoder
        inputs, lengths = batch_features(enc, waves)
        mel = np.ascontiguousarray(enc.whisper_window(inputs, lengths).transpose(1, 2).numpy())
        results = model.generate(
            ctranslate2.StorageView.from_array(mel),
            [self.prompt] * len(waves),
            beam_size=1,
            max_length=MAX_TOKENS,
        )
        return [r.sequences_ids[0] for r in results]

    def run(self, variant: str, waves: list[torch.Tensor]) -> None:
        b = len(waves)
        if variant == "base_only":
            out = [t.tokens for t in transcribe(self.whisper, waves, max_tokens=MAX_TOKENS)]
        elif variant == "fused_mixed":
            heads = self.slots.head_batch(self.heads[:b])
            out = [
                t.tokens
                for t in transcribe(
                    self.whisper, waves, max_tokens=MAX_TOKENS, hra=self.hra, heads=heads
                )
            ]
        elif variant == "per_task_sequential":
            out = []
            for wave, head in zip(waves, self.heads[:b]):
                heads = self.slots.head_batch([head])
                out += [
                    t.tokens
                    for t in transcribe(
                        self.whisper, [wave], max_tokens=MAX_TOKENS, hra=self.hra, heads=heads
                    )
                ]
        elif variant == "peft_lora_mixed":
            inputs, lengths = batch_features(self.whisper.encoder, waves)
            encoded, enc_lengths = self.peft(
                inputs, lengths, adapter_names=[f"t{i}" for i in range(b)]
            )
            durations = [w.numel() / 16_000 for w in waves]
            transcripts = decode(self.whisper, encoded, enc_lengths, False, MAX_TOKENS, durations)
            out = [t.tokens for t in transcripts]
        elif variant == "ctranslate2":
            out = self._ct2(self.ct2, waves)
        elif variant == "ctranslate2_int8":
            out = self._ct2(self.ct2_int8, waves)
        else:
            raise ValueError(variant)
        self.tokens[variant] = sum(len(t) for t in out)


def _spread(median: float | None, low: float | None, high: float | None) -> str:
    return "-" if median is None else f"{median:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (`make bench-quick`)")
    parser.add_argument("--smoke", action="store_true", help="seconds: B=2, one repeat (CI)")
    parser.add_argument("--batch", type=int, action="append", help="repeatable; default 1, 8, 32")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and ctranslate2 threads")
    parser.add_argument("--max-repeats", type=int)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="a subset (base_only kept)")
    parser.add_argument("--window", choices=["pad", "cut"], default="pad")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    threads = pin_threads(args.threads)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    batches = args.batch or ([2] if args.smoke else [1, 8, 32])
    min_repeats, max_repeats = {"smoke": (1, 1), "quick": (3, 6), "full": (6, 16)}[mode]
    max_repeats = args.max_repeats or max_repeats
    min_repeats = min(min_repeats, max_repeats)
    out = (
        args.out
        or REPO_ROOT
        / "load_tests"
        / "results"
        / f"whisper-{mode}{'' if args.window == 'pad' else '-cut'}.json"
    )
    variants = ["base_only"] + [v for v in (args.variants or VARIANTS) if v != "base_only"]
    bench = WhisperBench(max(batches), threads, args.window)
    rows = []
    for b in tqdm(batches, desc="bench whisper"):
        waves = make_clips("fsdd", b)
        audio_s = sum(w.numel() for w in waves) / 16_000
        with torch.inference_mode():
            timings = interleaved(
                {v: (lambda v=v, w=waves: bench.run(v, w)) for v in variants},
                baseline="base_only",
                min_repeats=min_repeats,
                max_repeats=max_repeats,
                clock=args.clock,
            )
        for variant, t in timings.items():
            anchor = timings.get("ctranslate2")
            vs_ct2 = [round(r, 4) for r in paired_ratio(t, anchor)] if anchor else [None] * 3
            rows.append(
                {
                    "batch": b,
                    "distinct_tasks": b
                    if variant in ("fused_mixed", "per_task_sequential", "peft_lora_mixed")
                    else 0,
                    "tokens_decoded": bench.tokens[variant],
                    "audio_s_per_s": round(audio_s / t.seconds_median, 2),
                    "ratio_to_ct2_min": vs_ct2[0],
                    "ratio_to_ct2_median": vs_ct2[1],
                    "ratio_to_ct2_max": vs_ct2[2],
                    **t.as_dict(),
                }
            )
        partial = {"config": {"mode": mode, "partial": True}, "rows": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(partial, indent=2))  # a long run keeps what it has
    print(
        f"threads={threads}, clock={args.clock}, window={args.window}; "
        "ratios: median [min, max] over repeats (n); > 1 is faster"
    )
    print("| B | variant | tokens | audio s/s | vs base_only | vs ctranslate2 f32 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['variant']} | {r['tokens_decoded']} | {r['audio_s_per_s']} | "
            f"{r['ratio_median']:.3f} [{r['ratio_min']:.3f}, {r['ratio_max']:.3f}] "
            f"({r['repeats']}{'' if r['stable'] else ', unstable'}) | "
            f"{_spread(r['ratio_to_ct2_median'], r['ratio_to_ct2_min'], r['ratio_to_ct2_max'])} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "mode": mode,
        "threads": threads,
        "clock": args.clock,
        "window": args.window,
        "audio": "fsdd test clips",
    }
    out.write_text(json.dumps({"config": config, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
