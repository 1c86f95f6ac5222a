"""What `hra adapt-backbone` costs on this machine: embedding cache and controller training step.

For each backbone size (random weights: cost does not depend on their values), built from a
Hugging Face config folder as the command builds it:
    embed_s_per_audio_s   the frozen front end (conv feature extractor, projection, positional
                          conv), run once per utterance to fill the cache
    cache_mb_per_audio_h  what the cache holds per hour of audio (float32 [T, D], 50 frames/s)
    step_cached_s         one training step of the multi-task stage (controller + linear heads,
                          forward + backward + AdamW) on cached embeddings, median
    step_uncached_s       the same step recomputing the front end from raw audio (no cache)
    est_1000_steps_h      1000 cached steps plus embedding `--audio-hours` of audio, in hours
Batches are `--batch-seconds` of padded audio (4 s utterances), as the command's default.

    nice -n 10 python -m load_tests.bench_adapt             # tiny + wav2vec2-base size
    python -m load_tests.bench_adapt --smoke                # tiny, 2 steps (CI)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from adapters_store.head_format import HeadType
from server.config import REPO_ROOT
from server.models.hf.checkpoint import read_checkpoint
from server.models.hf.ctc import HfCtcBackbone
from server.models.hra import HRAModel
from server.training.adapt import EmbeddedBackbone, controller_dim_for
from server.training.data import Batch
from server.training.recipes import HeadPools
from server.training.trainer import ctc_loss

logger = logging.getLogger(__name__)

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5} | {
    c: 6 + i for i, c in enumerate(LETTERS)
}
BASE = dict(  # facebook/wav2vec2-base-960h's config.json, abridged
    architectures=["Wav2Vec2ForCTC"],
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    conv_dim=[512] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_bias=False,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    feat_extract_norm="group",
    do_stable_layer_norm=False,
    vocab_size=len(VOCAB),
    pad_token_id=0,
)
SIZES = {
    "tiny": BASE
    | dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    ),
    "wav2vec2-base": BASE,
}
UTTERANCE_S = 4.0


def build(config: dict) -> HfCtcBackbone:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "vocab.json").write_text(json.dumps(VOCAB))
        (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
        return HfCtcBackbone(read_checkpoint(folder)).eval()


def measure(name: str, config: dict, steps: int, batch_seconds: float, hours: float) -> dict:
    torch.manual_seed(0)
    backbone = build(config)
    dim = controller_dim_for(backbone.hidden_dim)
    count = max(1, round(batch_seconds / UTTERANCE_S))
    waves = [torch.randn(int(UTTERANCE_S * 16_000)) * 0.1 for _ in range(count)]
    raw = torch.stack([backbone.featurize(w) for w in waves])  # [B, N, 1]
    raw_lengths = torch.full((count,), raw.shape[1])
    began = time.perf_counter()
    with torch.no_grad():
        embedded, lengths = backbone.embed(raw, raw_lengths)
    embed_s = time.perf_counter() - began
    batch = Batch(  # 30 random characters per utterance: only the step's cost matters
        raw, raw_lengths, torch.randint(3, 29, (count * 30,)), torch.full((count,), 30), None, []
    )

    results = {}
    for variant, (model_backbone, inputs, in_lengths) in {
        "cached": (EmbeddedBackbone(backbone), embedded, lengths),
        "uncached": (backbone, raw, raw_lengths),
    }.items():
        model = HRAModel(model_backbone, dim).eval()
        pools = HeadPools(HeadType.LINEAR, ["a", "b"], {"V": (backbone.hidden_dim, dim)}, seed=0)
        params = list(pools.parameters()) + list(model.controller.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        tasks = torch.arange(count) % 2
        times = []
        for _ in range(steps + 1):  # the first step warms up
            began = time.perf_counter()
            logits, out_lengths = model(inputs, in_lengths, pools.head_batch(tasks))
            loss = ctc_loss(logits, out_lengths, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - began)
        results[variant] = statistics.median(times[1:])
    audio_s = count * UTTERANCE_S
    frames_per_s = embedded.shape[1] / UTTERANCE_S
    embed_per_audio_s = embed_s / audio_s
    row = {
        "backbone": name,
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "hidden_dim": backbone.hidden_dim,
        "num_layers": backbone.num_layers,
        "controller_dim": dim,
        "batch_audio_s": audio_s,
        "embed_s_per_audio_s": round(embed_per_audio_s, 4),
        "cache_mb_per_audio_h": round(3600 * frames_per_s * backbone.hidden_dim * 4 / 1e6, 1),
        "step_cached_s": round(results["cached"], 4),
        "step_uncached_s": round(results["uncached"], 4),
        "cached_speedup": round(results["uncached"] / results["cached"], 2),
        "est_1000_steps_h": round(
            (1000 * results["cached"] + hours * 3600 * embed_per_audio_s) / 3600, 2
        ),
        "threads": torch.get_num_threads(),
    }
    logger.info("%s: %s", name, row)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-seconds", type=float, default=16.0)
    parser.add_argument("--audio-hours", type=float, default=1.0, help="for est_1000_steps_h")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny only, 2 steps")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "load_tests/results/adapt.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    sizes, steps = (["tiny"], 2) if args.smoke else (args.sizes, args.steps)
    rows = [measure(n, SIZES[n], steps, args.batch_seconds, args.audio_hours) for n in sizes]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
