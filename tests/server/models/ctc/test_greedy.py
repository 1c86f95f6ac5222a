from __future__ import annotations

import pytest
import torch

from server.models.ctc.greedy import greedy_decode
from server.models.ctc.tokenizer import CharTokenizer


def _logits_for(path: list[int], vocab: int = 29) -> torch.Tensor:
    logits = torch.full((1, len(path), vocab), -10.0)
    for t, token in enumerate(path):
        logits[0, t, token] = 10.0
    return logits


def test_greedy_decode_collapses_repeats_drops_blanks_and_times_words():
    tok = CharTokenizer()
    o, n, e, t, w = (tok.encode(c)[0] for c in "onetw")
    sp = tok.encode("a b")[1]  # the space symbol
    path = [0, o, o, n, 0, e, sp, sp, 0, t, w, w, o, 0]
    (decoded,) = greedy_decode(_logits_for(path), torch.tensor([len(path)]), tok, 0.04)
    assert decoded.text == "one two"
    assert [(w.word, w.start_s, w.end_s) for w in decoded.words] == [
        ("one", pytest.approx(1 * 0.04), pytest.approx(6 * 0.04)),  # frames 1-5, in seconds
        ("two", pytest.approx(9 * 0.04), pytest.approx(13 * 0.04)),
    ]


def test_decoding_ignores_frames_past_the_length():
    tok = CharTokenizer()
    a = tok.encode("a")[0]
    (decoded,) = greedy_decode(_logits_for([a, 0, a, a]), torch.tensor([2]), tok, 0.04)
    assert decoded.text == "a"


def test_tokenizer_normalises_and_round_trips():
    tok = CharTokenizer()
    assert tok.normalize("  Seven, EIGHT!  nine's ") == "seven eight nine's"
    assert tok.decode(tok.encode("seven eight")) == "seven eight"
