"""`hra adapt-backbone`: a pretrained CTC checkpoint -> a served, adapted HRA model directory.

    checkpoint (HF CTC folder, NeMo .nemo, or an HRA model.safetensors)
      -> HRAModel(backbone frozen, controller of controller_dim_for(D))
      -> multi-task stage: controller + one linear head per manifest task (CTC, as stage (b)
         of the default recipe: server/training/recipes.py train_heads)
      -> <out>/model.safetensors (backbone + controller, fingerprint in its metadata),
         <out>/heads (a DiskStore: the first heads), <out>/adapt.json (summary)
`hra train-head --model-dir <out>` and `hra serve` with HRA_MODEL_DIR=<out> use it unchanged.

What is cached: everything before the first encoder layer (Backbone.embed: the conv front
end, feature projection and positional convolution) is frozen and no head acts on it, so
each utterance is embedded once, alone, and training steps run only the encoder layers
(every layer carries the controller and a head, so nothing after embed can be cached).
Embedding alone is also what serving computes for a lone request, so a padded training batch
sees exactly each utterance's solo input. The cache is a [T, D] tensor per utterance at the
backbone's frame rate (wav2vec2: 50 frames/s, 768 floats: 150 KB per second of audio, 0.55 GB
per hour; kept in memory).

Controller size: controller_dim_for(D) = D/4 rounded down to a multiple of 8, within [16, 128]
(the default Conformer, D=144, has 32; wav2vec2-base/HuBERT-base, D=768, and the large
models, D=1024, get 128: a linear head is then D x 128 floats, 393 KB at D=768).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadType, validate_task_id, validate_vocabulary
from server.data.manifest import Utterance, read_manifest
from server.models.checkpoint import fingerprint, load_model, save_model
from server.models.hra import HRAModel
from server.training.data import FeatureSet, collate
from server.training.recipes import HeadPools, train_heads
from server.training.trainer import TrainConfig

logger = logging.getLogger(__name__)

MIN_CONTROLLER_DIM = 16
MAX_CONTROLLER_DIM = 128


def controller_dim_for(hidden_dim: int) -> int:
    """D/4, rounded down to a multiple of 8, clamped to [16, 128]."""
    return max(MIN_CONTROLLER_DIM, min(MAX_CONTROLLER_DIM, hidden_dim // 4 // 8 * 8))


@dataclass(frozen=True)
class AdaptConfig:
    controller_dim: int | None = None  # None: controller_dim_for(D)
    steps: int = 1000
    lr: float = 3e-3
    warmup: int = 50
    batch_seconds: float = 16.0  # padded audio seconds per training batch
    speeds: tuple[float, ...] = (1.0,)  # speed-perturbed copies (tempo and pitch), embedded
    seed: int = 0
    checkpoint_every: int = 200


def load_backbone(checkpoint: Path) -> nn.Module:
    """A Hugging Face CTC folder (config.json), a NeMo character CTC .nemo file, or the
    backbone of an HRA model.safetensors."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        from server.models.hf.ctc import HfCtcBackbone

        return HfCtcBackbone.from_folder(checkpoint)
    if checkpoint.suffix == ".nemo":
        from server.models.nemo.ctc import NemoCtcBackbone

        return NemoCtcBackbone.from_file(checkpoint)
    if checkpoint.suffix == ".safetensors":
        model, _ = load_model(checkpoint)
        return model.backbone
    raise ValueError(
        f"{checkpoint}: expected a Hugging Face CTC folder, a .nemo file or an HRA "
        "model.safetensors"
    )


class EmbeddedBackbone(nn.Module):
    """A Backbone whose inputs are already its embed() output [B, T, D] (the training cache).

    layer / logits are the wrapped backbone's; embed is the identity.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.inner = backbone
        self.hidden_dim = backbone.hidden_dim
        self.num_layers = backbone.num_layers
        self.vocab_size = backbone.vocab_size
        self.frame_seconds = backbone.frame_seconds

    def embed(self, inputs: torch.Tensor, lengths: torch.Tensor):
        return inputs, lengths

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self.inner.layer(index, x, pad_mask)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.logits(x)


def embedder(backbone: nn.Module):
    """waveform [N] -> the backbone's embedding [T, D] of it alone (frozen, no grad)."""

    @torch.no_grad()
    def embed_one(waveform: torch.Tensor) -> torch.Tensor:
        feats = backbone.featurize(waveform)
        x, lengths = backbone.embed(feats[None], torch.tensor([feats.shape[0]]))
        return x[0, : int(lengths[0])].contiguous()

    return embed_one


def read_manifests(paths: list[Path]) -> list[Utterance]:
    """Every manifest's rows; a row without a task takes its manifest's file stem."""
    rows: list[Utterance] = []
    for path in paths:
        rows += read_manifest(path, task=Path(path).stem)
    if not rows:
        raise ValueError("the manifests hold no utterances")
    return rows


@torch.no_grad()
def mean_loss(model: HRAModel, data: FeatureSet, pools: HeadPools, max_frames: int) -> float:
    """CTC loss over the whole set (length-ordered chunks), utterance-weighted: a fixed
    measurement, unlike the sampled training batches' losses."""
    order, total = data.length_order, 0.0
    start = 0
    while start < len(order):
        count = max(1, max_frames // data.features[order[start]].shape[0])
        last = data.features[order[min(start + count, len(order)) - 1]]  # the longest
        count = max(1, max_frames // last.shape[0])
        indices = order[start : start + count]
        batch = collate(data, indices)
        logits, lengths = model(batch.inputs, batch.lengths, pools.head_batch(batch.tasks))
        loss = F.ctc_loss(
            logits.log_softmax(-1).transpose(0, 1),
            batch.targets,
            lengths,
            batch.target_lengths,
            blank=0,
            reduction="sum",
            zero_infinity=True,
        )
        total += float(loss)
        start += len(indices)
    return total / len(data)


def adapt_backbone(
    checkpoint: Path,
    manifests: list[Path],
    out_dir: Path,
    config: AdaptConfig,
    work_dir: Path | None = None,
    owner: str | None = None,
) -> dict:
    """Build, train (controller + a linear head per task), write; returns the summary."""
    began = time.time()
    out_dir = Path(out_dir)
    _check_options(config)
    _check_out_dir(out_dir)
    backbone = load_backbone(checkpoint).eval()
    dim = config.controller_dim or controller_dim_for(backbone.hidden_dim)
    torch.manual_seed(config.seed)
    model = HRAModel(backbone, dim).eval()
    rows = read_manifests(manifests)
    for task in {u.task for u in rows}:
        validate_task_id(task)

    t0 = time.time()
    data = FeatureSet.build(rows, embedder(backbone), desc="embed", speeds=config.speeds)
    embed_seconds = time.time() - t0
    audio_seconds = sum(f.shape[0] for f in data.features) * backbone.frame_seconds
    cache_bytes = sum(f.numel() * f.element_size() for f in data.features)
    logger.info(
        "embedded %d utterances (%.0f s of audio) in %.1f s: cache %.1f MB",
        len(data),
        audio_seconds,
        embed_seconds,
        cache_bytes / 1e6,
    )

    cached = HRAModel(EmbeddedBackbone(backbone), dim).eval()
    cached.controller = model.controller  # one controller: trained here, saved from `model`
    max_frames = max(1, round(config.batch_seconds / backbone.frame_seconds))
    train_config = TrainConfig(
        steps=config.steps,
        lr=config.lr,
        warmup=min(config.warmup, max(1, config.steps // 5)),
        max_frames=max_frames,
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
    )
    untrained = HeadPools(HeadType.LINEAR, data.task_ids, _linear_shapes(model), config.seed)
    loss_before = mean_loss(cached, data, untrained, max_frames)
    resume = None
    if work_dir:  # a resumable run: same backbone, initial controller, rows and options
        key = f"{fingerprint(model)}:{[tuple(asdict(u).values()) for u in rows]}:{asdict(config)}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        resume = Path(work_dir) / f"multitask-{digest}.safetensors"
    t0 = time.time()
    pools = train_heads(
        cached, data, HeadType.LINEAR, 0, train_config, resume, train_controller=True
    )
    train_seconds = time.time() - t0
    loss_after = mean_loss(cached, data, pools, max_frames)

    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    fp = save_model(model, staging / "model.safetensors")
    store = DiskStore(staging / "heads")
    for record in pools.records(fp, 0):
        store.put(record.with_meta(owner=owner or None, vocabulary=validate_vocabulary([])))
    summary = {
        "checkpoint": str(checkpoint),
        "fingerprint": fp,
        "hidden_dim": backbone.hidden_dim,
        "num_layers": backbone.num_layers,
        "controller_dim": dim,
        "tasks": data.task_ids,
        "utterances": len(data),
        "audio_seconds": round(audio_seconds, 1),
        "embed_seconds": round(embed_seconds, 2),
        "cache_megabytes": round(cache_bytes / 1e6, 2),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / max(1, config.steps), 4),
        "loss_before": loss_before,
        "loss_after": loss_after,
        "config": asdict(config),
        "total_seconds": round(time.time() - began, 1),
    }
    (staging / "adapt.json").write_text(json.dumps(summary, indent=2))
    _check_out_dir(out_dir)
    staging.rename(out_dir)  # all or nothing: a half-written model dir is never served
    logger.info(
        "adapted %s -> %s: CTC loss %.3f -> %.3f per utterance, %d heads, fingerprint %s",
        checkpoint,
        out_dir,
        loss_before,
        loss_after,
        len(data.task_ids),
        fp,
    )
    return summary


def _check_options(config: AdaptConfig) -> None:
    if config.controller_dim is not None and not 1 <= config.controller_dim <= 4096:
        raise ValueError(f"controller_dim={config.controller_dim} is not in [1, 4096]")
    if config.steps < 1 or not 0 < config.batch_seconds <= 3600 or not config.lr > 0:
        raise ValueError("steps must be >= 1, batch_seconds in (0, 3600], lr > 0")
    if not config.speeds or not all(0.5 <= s <= 2.0 for s in config.speeds):
        raise ValueError(f"speeds={config.speeds}: each must be in [0.5, 2.0]")


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not empty: choose a new --out")
    if out_dir.exists():
        out_dir.rmdir()


def _linear_shapes(model: HRAModel) -> dict:
    from adapters_store.families import head_shapes

    return head_shapes(
        HeadType.LINEAR,
        model.backbone.hidden_dim,
        model.controller.dim,
        0,
        model.backbone.num_layers,
    )
