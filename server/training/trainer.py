"""One CTC training loop for every stage, resumable from safetensors checkpoints.

Each stage differs only in which parameters train, which head each utterance
uses, and whether the backbone runs in train mode; those are arguments.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torchaudio.transforms import FrequencyMasking, TimeMasking
from tqdm import tqdm

from adapters_store.head_batch import HeadBatch
from server.models.hra import HRAModel
from server.training.data import Batch, FeatureSet, sample_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float
    warmup: int = 100
    max_frames: int = 5000  # padded input frames per batch (100 frames = 1 s)
    weight_decay: float = 0.0
    spec_augment: tuple[int, int] | None = None  # (max freq-mask bins, max time-mask frames)
    seed: int = 0
    checkpoint_every: int = 200


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
    log_probs = logits.log_softmax(-1).transpose(0, 1)  # [T, B, V]
    return F.ctc_loss(
        log_probs, batch.targets, lengths, batch.target_lengths, blank=0, zero_infinity=True
    )


def train(
    model: HRAModel,
    params: dict[str, torch.nn.Parameter],
    data: FeatureSet,
    heads_for: Callable[[Batch], HeadBatch | None],
    config: TrainConfig,
    checkpoint: Path | None = None,
    backbone_trains: bool = False,
    desc: str = "train",
    until: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train `params` only; returns a summary (steps, final loss, seconds).

    `on_step(steps done, loss)` runs after every step (progress, cancel and time checks:
    it may raise to stop the run).

    `until` stops early at that step (checkpoint written) with the schedule of
    the full run, so a long run can be split across sessions and resumed.
    """
    torch.manual_seed(config.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    model.train(backbone_trains)
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=config.lr, weight_decay=config.weight_decay
    )
    # BatchNorm statistics are state too: a resumed backbone without them is broken
    buffers = dict(model.named_buffers()) if backbone_trains else {}
    start = _resume(checkpoint, params, buffers, optimizer) if checkpoint else 0
    lr_factor = _lr_lambda(config)
    augment = None
    if config.spec_augment:
        freq, frames = config.spec_augment
        augment = torch.nn.Sequential(FrequencyMasking(freq), TimeMasking(frames))
    began, losses = time.time(), []
    stop = min(config.steps, until) if until is not None else config.steps
    bar = tqdm(range(start, stop), desc=desc, initial=start, total=config.steps)
    for step in bar:
        batch = sample_batch(data, step, config.seed, config.max_frames)
        inputs = augment(batch.inputs.transpose(1, 2)).transpose(1, 2) if augment else batch.inputs
        logits, lengths = model(inputs, batch.lengths, heads_for(batch))
        loss = ctc_loss(logits, lengths, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 5.0)
        for group in optimizer.param_groups:  # a pure function of step: resumes exactly
            group["lr"] = config.lr * lr_factor(step)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, losses[-1])
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if checkpoint and ((step + 1) % config.checkpoint_every == 0 or step + 1 == stop):
            _save(checkpoint, params, buffers, optimizer, step + 1)
    model.eval()
    for p in params.values():
        p.requires_grad_(False)
    tail = losses[-50:] or [float("nan")]
    summary = {
        "stage": desc,
        "steps": config.steps,
        "resumed_at": start,
        "final_loss": sum(tail) / len(tail),
        "seconds": round(time.time() - began, 1),
    }
    logger.info("%s done: %s", desc, summary)
    return summary


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _save(
    path: Path, params: dict, buffers: dict, optimizer: torch.optim.Optimizer, step: int
) -> None:
    tensors = {f"param/{k}": v.detach().contiguous() for k, v in params.items()}
    tensors.update({f"buffer/{k}": v.detach().contiguous() for k, v in buffers.items()})
    for name, p in params.items():
        state = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"{key}/{name}"] = state[key].contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step)})
    tmp.replace(path)


def _resume(path: Path, params: dict, buffers: dict, optimizer: torch.optim.Optimizer) -> int:
    if not path.exists():
        return 0
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        step = int(f.metadata()["step"])
    tensors = load_file(str(path))
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[f"param/{name}"])
            if f"exp_avg/{name}" in tensors:
                optimizer.state[p] = {
                    "step": torch.tensor(float(step)),
                    "exp_avg": tensors[f"exp_avg/{name}"].clone(),
                    "exp_avg_sq": tensors[f"exp_avg_sq/{name}"].clone(),
                }
        missing = [name for name in buffers if f"buffer/{name}" not in tensors]
        if missing:
            raise RuntimeError(
                f"{path} has no buffers {missing[:3]}...: written before they were saved; "
                "delete it to train this stage again"
            )
        for name, buffer in buffers.items():
            buffer.copy_(tensors[f"buffer/{name}"])
    logger.info("resumed %s at step %d", path, step)
    return step
