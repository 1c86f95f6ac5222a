"""Greedy CTC decoding with the frame alignment kept, for timestamps."""

from __future__ import annotations

import torch

from server.models.ctc.tokenizer import BLANK, CharTokenizer
from server.models.transcript import Decoded, WordTiming


def greedy_decode(
    logits: torch.Tensor, lengths: torch.Tensor, tokenizer: CharTokenizer, frame_seconds: float
) -> list[Decoded]:
    """Best path per utterance: argmax, collapse repeats, drop blanks.

    logits  # [B, T, V]
    lengths # [B] valid frames per utterance
    Word boundaries come from the frames on which each word's first and last
    characters were emitted, which is what CTC alignment gives for free; a word
    spans [first frame, last frame + 1) x frame_seconds.
    """
    best = logits.argmax(dim=-1).cpu()  # [B, T]
    results = []
    for b, n in enumerate(lengths.tolist()):
        path = best[b, :n].tolist()
        chars: list[tuple[str, int]] = []
        prev = BLANK
        for t, token in enumerate(path):
            if token != prev and token != BLANK:
                chars.append((tokenizer.symbols[token], t))
            prev = token
        results.append(_words_from_chars(chars, n, frame_seconds))
    return results


def _words_from_chars(
    chars: list[tuple[str, int]], num_frames: int, frame_seconds: float
) -> Decoded:
    words: list[WordTiming] = []
    current: list[tuple[str, int]] = []
    for ch, t in chars + [(" ", num_frames)]:
        if ch == " ":
            if current:
                word = "".join(c for c, _ in current)
                start, end = current[0][1], current[-1][1] + 1
                words.append(WordTiming(word, start * frame_seconds, end * frame_seconds))
            current = []
        else:
            current.append((ch, t))
    return Decoded(text=" ".join(w.word for w in words), words=words, num_frames=num_frames)
