"""Teacher-forced training of the HRA controller and heads on Whisper, backbone frozen.

Per utterance the decoder reads, and is scored on (loss on the transcript and eot):
    no timestamps  <|sot|> <|notimestamps|> transcript <|eot|>
    timestamps     <|sot|> <|0.00|> transcript <|t_end|> <|eot|>   (t_end not scored)
Rows alternate between the two forms: serving decodes with timestamps (segments),
and the heads should not depend on the prompt. Every Whisper weight is frozen
(requires_grad False, checked bit-identical in tests); gradients reach only the
controller and head tensors handed in as `params`, through the frozen encoder
layers that follow each head and the frozen decoder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from adapters_store.head_batch import HeadBatch
from server.models.backbone import padding_mask
from server.models.hra import HRAModel
from server.models.whisper.encoder import additive_mask
from server.models.whisper.model import WhisperModel
from server.models.whisper.tokenizer import TIMESTAMP_SECONDS
from server.training.trainer import TrainConfig, _lr_lambda, _resume, _save
from server.training.whisper.data import WhisperBatch, WhisperSet, sample_batch

logger = logging.getLogger(__name__)

IGNORE = -100
FRAME_SECONDS = 0.01  # log-mel hop


def teacher_forcing(
    whisper: WhisperModel, batch: WhisperBatch, timestamps: list[bool]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs [B, L] (eot-padded) and targets [B, L] (IGNORE where unscored)."""
    tok = whisper.tokenizer
    inputs, targets = [], []
    for ids, frames, ts in zip(batch.tokens, batch.lengths.tolist(), timestamps):
        if ts:
            end = min(1500, round(frames * FRAME_SECONDS / TIMESTAMP_SECONDS))
            seq = [tok.sot, tok.timestamp_begin, *ids, tok.timestamp_begin + end, tok.eot]
            target = [IGNORE] + ids + [IGNORE, tok.eot]
        else:
            seq = [tok.sot, tok.no_timestamps, *ids, tok.eot]
            target = [IGNORE] + ids + [tok.eot]
        inputs.append(seq[:-1])
        targets.append(target)
    width = max(len(s) for s in inputs)
    x = torch.full((len(inputs), width), tok.eot, dtype=torch.long)
    y = torch.full((len(inputs), width), IGNORE, dtype=torch.long)
    for b, (s, t) in enumerate(zip(inputs, targets)):
        x[b, : len(s)] = torch.tensor(s)
        y[b, : len(t)] = torch.tensor(t)
    return x, y


def batch_loss(
    whisper: WhisperModel,
    hra: HRAModel,
    batch: WhisperBatch,
    heads: HeadBatch | None,
    step: int,
) -> torch.Tensor:
    """Mean cross-entropy of the scored tokens, encoder run with `heads`."""
    encoded, lengths = hra(batch.inputs, batch.lengths, heads)
    pad = padding_mask(lengths, encoded.shape[1])
    memory_mask = additive_mask(pad, encoded.dtype) if bool(pad.any()) else None
    timestamps = [(step + b) % 2 == 1 for b in range(len(batch.tokens))]
    x, y = teacher_forcing(whisper, batch, timestamps)
    logits, _ = whisper.decoder(x, whisper.decoder.start(encoded, memory_mask))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


def train(
    whisper: WhisperModel,
    hra: HRAModel,
    params: dict[str, torch.nn.Parameter],
    data: WhisperSet,
    heads_for: Callable[[WhisperBatch], HeadBatch | None],
    config: TrainConfig,
    rows: int,
    checkpoint: Path | None = None,
    desc: str = "train",
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train `params` only (everything else frozen); returns a summary.

    `on_step(steps done, loss)` runs after every step, as in the CTC trainer (progress,
    cancel and time checks: it may raise to stop the run; params are then left trainable
    and the caller discards them)."""
    torch.manual_seed(config.seed)
    for p in list(whisper.parameters()) + list(hra.parameters()):
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    whisper.eval()
    hra.eval()  # no dropout or batch statistics anywhere in Whisper
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=0.0)
    start = _resume(checkpoint, params, {}, optimizer) if checkpoint else 0
    lr_factor = _lr_lambda(config)
    began, losses = time.time(), []
    bar = tqdm(range(start, config.steps), desc=desc, initial=start, total=config.steps)
    for step in bar:
        batch = sample_batch(data, step, config.seed, rows)
        loss = batch_loss(whisper, hra, batch, heads_for(batch), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 5.0)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step)
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, losses[-1])
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
            logger.info("%s step %d loss %.4f", desc, step, sum(losses[-10:]) / len(losses[-10:]))
        if checkpoint and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            _save(checkpoint, params, {}, optimizer, step + 1)
    for p in params.values():
        p.requires_grad_(False)
    seconds = time.time() - began
    done = max(1, config.steps - start)
    summary = {
        "stage": desc,
        "steps": config.steps,
        "resumed_at": start,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])) if losses else None,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / done, 2),
        "rows_per_step": rows,
    }
    logger.info("%s done: %s", desc, summary)
    return summary
