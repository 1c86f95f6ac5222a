"""Whisper's timestamp tokens: the decoding rules that keep them well formed, and segments.

Rules (openai-whisper's ApplyTimestampRules, per utterance, on the emitted tokens):
    first token      a timestamp, at most <|1.00|>
    pairs            after <|t_a|> text <|t_b|> comes text; after a lone <|t|>, a timestamp
                     or the end (text is suppressed)
    monotonic        no timestamp earlier than the last one (strictly later after a pair)
    preference       when the timestamps' total probability beats every text token, a
                     timestamp is forced
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from server.models.whisper.tokenizer import WhisperTokenizer

MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1.0 s


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float  # seconds
    text: str
    tokens: tuple[int, ...]


def apply_timestamp_rules(
    logits: torch.Tensor, emitted: list[list[int]], tok: WhisperTokenizer, first: bool
) -> None:
    """Mask logits [B, V] in place for each row's emitted tokens so far."""
    tb, eot = tok.timestamp_begin, tok.eot
    neg = float("-inf")
    logits[:, tok.no_timestamps] = neg
    for k, seq in enumerate(emitted):
        last_ts = len(seq) >= 1 and seq[-1] >= tb
        penultimate_ts = len(seq) < 2 or seq[-2] >= tb
        if last_ts:
            if penultimate_ts:
                logits[k, tb:] = neg
            else:
                logits[k, :eot] = neg
        stamps = [t for t in seq if t >= tb]
        if stamps:
            floor = stamps[-1] if (last_ts and not penultimate_ts) else stamps[-1] + 1
            logits[k, tb:floor] = neg
    if first:
        logits[:, :tb] = neg
        logits[:, tb + MAX_INITIAL_TIMESTAMP_INDEX + 1 :] = neg
    logprobs = torch.log_softmax(logits, dim=-1)
    stamp_lp = torch.logsumexp(logprobs[:, tb:], dim=-1)
    text_lp = logprobs[:, :tb].max(dim=-1).values
    force = stamp_lp > text_lp
    logits[force, :tb] = neg


def segments_of(
    tokens: list[int], tok: WhisperTokenizer, duration: float | None = None
) -> list[Segment]:
    """<|a|> text <|b|> ... -> segments; text after the last opening timestamp ends at the
    clip's duration (or the opening time when unknown), as Whisper's transcribe does."""
    tb = tok.timestamp_begin
    segments: list[Segment] = []
    start: float | None = None
    text: list[int] = []
    for t in tokens:
        if t < tb:
            text.append(t)
            continue
        seconds = tok.timestamp_seconds(t)
        if start is None:
            start = seconds
        else:
            if text:
                segments.append(Segment(start, seconds, tok.decode(text).strip(), tuple(text)))
            start, text = None, []
    if text:
        begin = start if start is not None else (segments[-1].end if segments else 0.0)
        end = max(begin, duration) if duration is not None else begin
        segments.append(Segment(begin, end, tok.decode(text).strip(), tuple(text)))
    return segments
