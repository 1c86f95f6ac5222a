"""Batch inference: features + per-utterance heads in, decoded transcripts out.

Shared by the evaluation CLI, the transcribe CLI and the serving engine, so
all three give the same text for the same audio and head: greedy CTC, or the
best sequence of the task's vocabulary words when its head names one.
"""

from __future__ import annotations

import numpy as np
import torch

from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadRecord, HeadType
from server.models.ctc.features import pad_features
from server.models.ctc.greedy import greedy_decode
from server.models.ctc.tokenizer import CharTokenizer
from server.models.ctc.vocabulary import vocabulary_decode, word_loop
from server.models.hra import HRAModel
from server.models.transcript import Decoded

_TOKENIZER = CharTokenizer()


def head_entry(record: HeadRecord | None) -> tuple[HeadType, dict[str, torch.Tensor]] | None:
    if record is None:
        return None
    return HeadType(record.meta.head_type), record.tensors


def vocabulary_of(head: HeadRecord | None) -> tuple[str, ...]:
    return head.meta.vocabulary if head is not None else ()


def decode_one(logits: torch.Tensor, vocabulary: tuple[str, ...], frame_seconds: float) -> Decoded:
    """logits [T, V] of one utterance (valid frames only): greedy, or within its vocabulary.
    Word times in seconds: a frame is `frame_seconds` (the backbone's)."""
    if vocabulary:
        return decode_within(log_probs_of(logits), vocabulary, frame_seconds)
    length = torch.tensor([logits.shape[0]])
    return greedy_decode(logits[None], length, _TOKENIZER, frame_seconds)[0]


def log_probs_of(logits: torch.Tensor) -> np.ndarray:
    """logits [T, V] -> log-probabilities [T, V] as float32 numpy, on the host."""
    return logits.log_softmax(-1).float().cpu().numpy()


def decode_within(
    log_probs: np.ndarray, vocabulary: tuple[str, ...], frame_seconds: float
) -> Decoded:
    """The best sequence of the vocabulary's words (pure numpy: any thread may run it)."""
    return vocabulary_decode(log_probs, word_loop(vocabulary), frame_seconds)


def decode(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    vocabularies: list[tuple[str, ...]],
    frame_seconds: float,
) -> list[Decoded]:
    """One Decoded per utterance of a batch: logits [B, T, V], lengths [B]."""
    return [
        decode_one(logits[b, : int(n)], v, frame_seconds)
        for b, (n, v) in enumerate(zip(lengths, vocabularies))
    ]


def forward_padded(
    model: HRAModel, feats: list[torch.Tensor], heads: HeadBatch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fused forward over utterances that may each use a different head: logits, lengths.

    The one forward path: the serving engine (heads from the device slot pool) and the
    evaluation (heads stacked per batch) both come through here.
    """
    inputs, lengths = pad_features(feats)
    return model(inputs.to(device), lengths.to(device), heads)


@torch.inference_mode()
def forward_features(
    model: HRAModel, feats: list[torch.Tensor], heads: list[HeadRecord | None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """forward_padded with the heads given as records (evaluation, CLI)."""
    device = next(model.parameters()).device
    head_batch = HeadBatch.from_heads([head_entry(h) for h in heads]).to(device)
    return forward_padded(model, feats, head_batch, device)


def transcribe_features(
    model: HRAModel, feats: list[torch.Tensor], heads: list[HeadRecord | None]
) -> list[Decoded]:
    """Transcripts as served: each head's own vocabulary, if it has one."""
    logits, lengths = forward_features(model, feats, heads)
    vocabularies = [vocabulary_of(h) for h in heads]
    return decode(logits, lengths, vocabularies, model.backbone.frame_seconds)
