"""Batch inference: features + per-utterance heads in, decoded transcripts out.

Shared by the evaluation CLI, the transcribe CLI and the serving engine, so
all three give the same text for the same audio and head.
"""

from __future__ import annotations

import torch

from adapters_store.head_format import HeadRecord, HeadType
from server.model.adapters import HeadBatch
from server.model.decoding import Decoded, greedy_decode
from server.model.features import pad_features
from server.model.hra import HRAModel
from server.model.tokenizer import CharTokenizer

_TOKENIZER = CharTokenizer()


def head_entry(record: HeadRecord | None) -> tuple[HeadType, dict[str, torch.Tensor]] | None:
    if record is None:
        return None
    return HeadType(record.meta.head_type), record.tensors


@torch.inference_mode()
def transcribe_features(
    model: HRAModel, feats: list[torch.Tensor], heads: list[HeadRecord | None]
) -> list[Decoded]:
    """One fused forward over utterances that may each use a different head."""
    inputs, lengths = pad_features(feats)
    device = next(model.parameters()).device
    head_batch = HeadBatch.from_heads([head_entry(h) for h in heads]).to(device)
    logits, out_lengths = model(inputs.to(device), lengths.to(device), head_batch)
    return greedy_decode(logits, out_lengths, _TOKENIZER)
