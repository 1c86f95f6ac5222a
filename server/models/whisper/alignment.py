"""Word times from the decoder's cross-attention: alignment heads + dynamic time warping.

Whisper's own method (openai-whisper timing.py), re-derived:
    1. re-run the decoder once over  prompt <|notimestamps|> text... <|endoftext|>
       (timestamps removed), keeping the cross-attention weights of the model's
       alignment heads (config.json "alignment_heads", (layer, head) pairs);
    2. keep the encoder states of the clip itself (duration / 20 ms), normalise each
       head's weights per frame over the tokens (z-score), median-filter them along
       time (width 7), average the heads: M [tokens, frames];
    3. DTW over -M from the row that predicts the first text token to the row that
       predicts <|endoftext|>: a monotonic path; the frame where the path first
       enters row k is when text token k starts;
    4. words are runs of tokens (a new word at a leading space, or at a segment
       boundary); a word spans [start of its first token, start of the next word);
       times are clamped to the word's segment (Whisper's timestamp tokens).
Batched: one decoder pass for every row that asked for words (rows padded with
<|endoftext|> after their own end; the causal mask keeps padding out of real rows).
Not done (openai-whisper's extra heuristics): clipping words longer than twice the
median word, and re-attaching leading punctuation; words in languages written
without spaces are whole segments' runs of tokens up to a full character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from server.models.whisper.decoder import DecoderState, WhisperDecoder
from server.models.whisper.timestamps import Segment
from server.models.whisper.tokenizer import TIMESTAMP_SECONDS, WhisperTokenizer

MEDIAN_WIDTH = 7
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


@dataclass(frozen=True)
class WordTime:
    word: str
    start: float  # seconds
    end: float
    segment: int | None = None  # index of its segment in the request's segments (if any)


@dataclass(frozen=True)
class AlignRequest:
    """One row's decoded tokens to align (timestamps included), and where they live."""

    row: int  # row of the encoder output / start state
    prompt: list[int]  # the utterance's sot sequence (without <|notimestamps|>)
    tokens: list[int]
    duration: float  # seconds of audio in the clip
    segments: list[Segment]
    language: str | None


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through cost [N, M] from (0, 0) to (N-1, M-1), moving
    down, right or diagonally: (row indices, column indices) along the path.

    Cells on one anti-diagonal (i + j = d) depend only on the two before, so each
    diagonal is one vector step: N + M numpy steps, not N x M Python ones (a request's
    worst case, 224 tokens x 1500 frames, stays in milliseconds)."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    move = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0 diagonal, 1 down, 2 right
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        options = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        best = options.argmin(axis=0)  # ties: diagonal, then down, as a scalar loop
        acc[i, j] = cost[i - 1, j - 1] + options[best, np.arange(len(i))]
        move[i, j] = best
    rows, cols = [], []
    i, j = n, m
    while i > 0 and j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        step = move[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def median_filter(x: torch.Tensor, width: int = MEDIAN_WIDTH) -> torch.Tensor:
    """Median over a sliding window of the last dim (reflect-padded, same length)."""
    half = width // 2
    if x.shape[-1] <= half:
        return x
    flat = x.reshape(-1, 1, x.shape[-1])  # [N, 1, T]: reflect pads 3-D inputs
    padded = F.pad(flat, (half, half), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(x.shape)


def _word_runs(
    tok: WhisperTokenizer, text: list[int], seg_of: list[int], spaced: bool
) -> list[list[int]]:
    """Indices into `text` grouped into words (module docstring, step 4)."""
    runs: list[list[int]] = []
    for k, t in enumerate(text):
        piece = tok.id_to_token(t)
        new = not runs or seg_of[k] != seg_of[runs[-1][-1]]
        if spaced:
            new = new or piece.startswith("\u0120")  # byte-level BPE's leading space
        else:
            new = new or "\ufffd" not in tok.decode([text[i] for i in runs[-1]])
        if new:
            runs.append([k])
        else:
            runs[-1].append(k)
    return runs


@torch.inference_mode()
def align_words(
    dec: WhisperDecoder,
    tok: WhisperTokenizer,
    heads: Sequence[tuple[int, int]],
    start: DecoderState,  # the batch's start state (cross K/V of every row, no cache)
    requests: Sequence[AlignRequest],
) -> list[list[WordTime]]:
    """Word times for each request, in order (module docstring)."""
    out: list[list[WordTime]] = [[] for _ in requests]
    todo = [i for i, r in enumerate(requests) if any(t < tok.eot for t in r.tokens)]
    if not todo or not heads:
        return out
    sequences = []
    for i in todo:
        r = requests[i]
        text = [t for t in r.tokens if t < tok.eot]
        sequences.append([*r.prompt, tok.no_timestamps, *text, tok.eot])
    longest = max(len(s) for s in sequences)
    if longest > dec.max_positions:
        return out  # cannot happen after decoding within the context; never a crash
    batch = torch.full((len(sequences), longest), tok.eot, dtype=torch.long)
    for k, s in enumerate(sequences):
        batch[k, : len(s)] = torch.tensor(s)
    rows = torch.tensor([requests[i].row for i in todo])
    state = start.select(rows)
    keep: list[torch.Tensor] = []
    dec(batch.to(state.memory[0][0].device), state, keep)
    weights = torch.stack([keep[layer][:, head] for layer, head in heads], dim=1).cpu()
    for k, i in enumerate(todo):
        out[i] = _row_words(tok, requests[i], sequences[k], weights[k])
    return out


def _row_words(
    tok: WhisperTokenizer, r: AlignRequest, sequence: list[int], w: torch.Tensor
) -> list[WordTime]:
    """w [A, n_padded, S] -> this row's words."""
    frames = max(1, min(w.shape[-1], round(r.duration / TIMESTAMP_SECONDS)))
    w = w[:, : len(sequence), :frames].float()
    std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
    w = median_filter((w - mean) / (std + 1e-10))
    matrix = w.mean(dim=0)[len(r.prompt) : -1]  # rows predicting text tokens, then eot
    text_rows, time_cols = dtw(-matrix.double().numpy())
    first = np.pad(np.diff(text_rows), (1, 0), constant_values=1).astype(bool)
    starts = time_cols[first] * TIMESTAMP_SECONDS  # [n_text + 1]: token k starts
    text = sequence[len(r.prompt) + 1 : -1]
    seg_of = [n for n, seg in enumerate(r.segments) for _ in seg.tokens]
    if len(seg_of) != len(text):  # no timestamps decoded: one span, the clip
        seg_of = [0] * len(text)
    spaced = r.language not in NO_SPACE_LANGUAGES
    words = []
    runs = _word_runs(tok, text, seg_of, spaced)
    for n, run in enumerate(runs):
        word = tok.decode([text[k] for k in run]).strip()
        begin = float(starts[run[0]])
        end = float(starts[runs[n + 1][0]] if n + 1 < len(runs) else starts[-1])
        segment = seg_of[run[0]] if len(r.segments) > seg_of[run[0]] else None
        if segment is not None:
            seg = r.segments[segment]
            lo, hi = seg.start, seg.end
        else:
            lo, hi = 0.0, r.duration
        begin = min(max(begin, lo), hi)
        end = min(max(end, begin), hi)
        if word:
            words.append(WordTime(word, round(begin, 3), round(end, 3), segment))
    return words
