import numpy as np
import pytest
import torch

from server.model.decoding import greedy_decode
from server.model.tokenizer import CharTokenizer
from server.model.vocabulary_decoding import WordLoop, vocabulary_decode, word_loop

TOKENIZER = CharTokenizer()
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _log_probs(path: str, confidence: float = 0.9) -> np.ndarray:
    """One frame per character of `path`: '_' is blank; the named token gets `confidence`."""
    vocab = TOKENIZER.vocab_size
    probs = np.full((len(path), vocab), (1 - confidence) / (vocab - 1))
    for t, ch in enumerate(path):
        probs[t, 0 if ch == "_" else TOKENIZER.symbols.index(ch)] = confidence
    return np.log(probs)


def _decode(path: str, words=DIGITS) -> str:
    return vocabulary_decode(_log_probs(path), word_loop(tuple(words))).text


def test_a_misspelling_becomes_the_nearest_vocabulary_word():
    assert _decode("_t_e_r_o_") == "zero"
    assert _decode("_ff_ii_n_") in {"five", "nine"}  # one letter off either
    assert _decode("_t_w_e_") == "two"


def test_an_in_vocabulary_path_decodes_exactly_as_greedy_with_the_same_timings():
    path = "__oo_n_ee__ _tt_w_o__ _s_i_x___"
    log_probs = _log_probs(path)
    greedy = greedy_decode(torch.from_numpy(log_probs)[None], torch.tensor([len(path)]), TOKENIZER)[
        0
    ]
    constrained = vocabulary_decode(log_probs, word_loop(DIGITS))
    assert greedy.text == constrained.text == "one two six"
    assert constrained.words == greedy.words
    assert constrained.num_frames == len(path)


def test_repeated_words_and_double_letters_survive():
    assert _decode("_o_n_e_ _o_n_e_") == "one one"
    assert _decode("_o_n_e__o_n_e_") == "one one"  # no space, only blanks between
    assert _decode("_t_h_r_e_e_") == "three"


def test_silence_decodes_to_no_words():
    decoded = vocabulary_decode(_log_probs("________"), word_loop(DIGITS))
    assert decoded.text == "" and decoded.words == []


def test_only_vocabulary_words_ever_come_out():
    rng = np.random.default_rng(0)
    loop = word_loop(("yes", "no"))
    for _ in range(20):
        noise = np.log(rng.dirichlet(np.ones(TOKENIZER.vocab_size), size=30))
        assert set(vocabulary_decode(noise, loop).text.split()) <= {"yes", "no"}


@pytest.mark.parametrize("bad", [(), ("two words",), ("",)])
def test_a_vocabulary_of_no_words_or_of_phrases_is_refused(bad):
    with pytest.raises(ValueError):
        WordLoop(bad, TOKENIZER)
