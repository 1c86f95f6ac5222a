"""Batch inference: features + per-utterance heads in, decoded transcripts out.

Shared by the evaluation CLI, the transcribe CLI and the serving engine, so
all three give the same text for the same audio and head: greedy CTC, or the
best sequence of the task's vocabulary words when its head names one.
"""

from __future__ import annotations

import torch

from adapters_store.head_format import HeadRecord, HeadType
from server.model.adapters import HeadBatch
from server.model.decoding import Decoded, greedy_decode
from server.model.features import pad_features
from server.model.hra import HRAModel
from server.model.tokenizer import CharTokenizer
from server.model.vocabulary_decoding import vocabulary_decode, word_loop

_TOKENIZER = CharTokenizer()


def head_entry(record: HeadRecord | None) -> tuple[HeadType, dict[str, torch.Tensor]] | None:
    if record is None:
        return None
    return HeadType(record.meta.head_type), record.tensors


def vocabulary_of(head: HeadRecord | None) -> tuple[str, ...]:
    return head.meta.vocabulary if head is not None else ()


def decode(
    logits: torch.Tensor, lengths: torch.Tensor, vocabularies: list[tuple[str, ...]]
) -> list[Decoded]:
    """Greedy per utterance, except where its vocabulary is non-empty."""
    results = greedy_decode(logits, lengths, _TOKENIZER)
    for b, words in enumerate(vocabularies):
        if words:
            log_probs = logits[b, : int(lengths[b])].log_softmax(-1).float().cpu().numpy()
            results[b] = vocabulary_decode(log_probs, word_loop(words))
    return results


@torch.inference_mode()
def forward_features(
    model: HRAModel, feats: list[torch.Tensor], heads: list[HeadRecord | None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fused forward over utterances that may each use a different head: logits, lengths."""
    inputs, lengths = pad_features(feats)
    device = next(model.parameters()).device
    head_batch = HeadBatch.from_heads([head_entry(h) for h in heads]).to(device)
    return model(inputs.to(device), lengths.to(device), head_batch)


def transcribe_features(
    model: HRAModel, feats: list[torch.Tensor], heads: list[HeadRecord | None]
) -> list[Decoded]:
    """Transcripts as served: each head's own vocabulary, if it has one."""
    logits, lengths = forward_features(model, feats, heads)
    return decode(logits, lengths, [vocabulary_of(h) for h in heads])
