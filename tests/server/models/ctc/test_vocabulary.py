import time

import numpy as np
import pytest
import torch

from server.errors import VocabularyTooCostly
from server.models.ctc.greedy import greedy_decode
from server.models.ctc.tokenizer import CharTokenizer
from server.models.ctc.vocabulary import (
    WORD_LOOP_CACHE_BYTES,
    WordLoop,
    _loops,
    check_vocabulary_cost,
    model_frames,
    vocabulary_decode,
    vocabulary_decode_cost,
    vocabulary_states,
    word_loop,
)

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
    return vocabulary_decode(_log_probs(path), word_loop(tuple(words)), 0.04).text


def test_a_misspelling_becomes_the_nearest_vocabulary_word():
    assert _decode("_t_e_r_o_") == "zero"
    assert _decode("_ff_ii_n_") in {"five", "nine"}  # one letter off either
    assert _decode("_t_w_e_") == "two"


def test_an_in_vocabulary_path_decodes_exactly_as_greedy_with_the_same_timings():
    path = "__oo_n_ee__ _tt_w_o__ _s_i_x___"
    log_probs = _log_probs(path)
    greedy = greedy_decode(
        torch.from_numpy(log_probs)[None], torch.tensor([len(path)]), TOKENIZER, 0.04
    )[0]
    constrained = vocabulary_decode(log_probs, word_loop(DIGITS), 0.04)
    assert greedy.text == constrained.text == "one two six"
    assert constrained.words == greedy.words
    assert constrained.num_frames == len(path)


def test_repeated_words_and_double_letters_survive():
    assert _decode("_o_n_e_ _o_n_e_") == "one one"
    assert _decode("_o_n_e__o_n_e_") == "one one"  # no space, only blanks between
    assert _decode("_t_h_r_e_e_") == "three"


def test_silence_decodes_to_no_words():
    decoded = vocabulary_decode(_log_probs("________"), word_loop(DIGITS), 0.04)
    assert decoded.text == "" and decoded.words == []


def test_only_vocabulary_words_ever_come_out():
    rng = np.random.default_rng(0)
    loop = word_loop(("yes", "no"))
    for _ in range(20):
        noise = np.log(rng.dirichlet(np.ones(TOKENIZER.vocab_size), size=30))
        assert set(vocabulary_decode(noise, loop, 0.04).text.split()) <= {"yes", "no"}


@pytest.mark.parametrize("bad", [(), ("two words",), ("",)])
def test_a_vocabulary_of_no_words_or_of_phrases_is_refused(bad):
    with pytest.raises(ValueError):
        WordLoop(bad, TOKENIZER)


# --- bounded cost: states x frames, checked at admission; the loop cache bounded in bytes ---


def _words(count: int, length: int, seed: int = 0) -> tuple[str, ...]:
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=length)))
    return tuple(sorted(words))


@pytest.mark.parametrize("words", [DIGITS, ("a",), _words(50, 9), ("don't", "zero")])
def test_the_cost_model_counts_exactly_the_word_loops_states(words):
    assert vocabulary_states(words) == len(WordLoop(words, TOKENIZER).labels)
    assert vocabulary_decode_cost(words, 100) == 100 * len(WordLoop(words, TOKENIZER).labels)


def test_a_large_vocabulary_on_long_audio_is_refused_with_a_stable_code():
    big = _words(1000, 8)  # 17,002 states: 60 s would be 25 M state-frames, ~1.5 s of Viterbi
    with pytest.raises(VocabularyTooCostly) as err:
        check_vocabulary_cost(big, 60.0)
    assert err.value.code == "vocabulary_too_costly"
    check_vocabulary_cost(big, 5.0)  # the same vocabulary on a short clip is fine
    check_vocabulary_cost(DIGITS, 600.0)  # ten digits: any accepted length
    check_vocabulary_cost((), 1e6)  # no vocabulary: greedy decoding


def test_the_admission_estimate_never_undercounts_the_models_frames(default_model):
    model, _ = default_model
    for seconds in (0.05, 0.45, 1.0, 3.3, 10.0):
        feats = model.backbone.featurize(torch.zeros(int(seconds * 16_000)))
        with torch.inference_mode():
            logits, lengths = model(feats[None], torch.tensor([feats.shape[0]]))
        actual = int(lengths[0])
        assert actual <= model_frames(seconds, model.backbone.frame_seconds) <= actual + 2


def test_decoding_time_follows_states_times_frames_whatever_the_shape():
    """Same state-frames, different shapes -> about the same time: cost is states x frames."""
    rng = np.random.default_rng(0)
    wide, narrow = word_loop(_words(1000, 8)), word_loop(_words(20, 8))
    frames_wide = 40
    frames_narrow = frames_wide * len(wide.labels) // len(narrow.labels)
    noise = np.log(rng.dirichlet(np.ones(TOKENIZER.vocab_size), size=frames_narrow))

    def timed(loop, frames):
        began = time.perf_counter()
        vocabulary_decode(noise[:frames], loop, 0.04)
        return time.perf_counter() - began

    timed(wide, 2), timed(narrow, 2)
    wide_s = min(timed(wide, frames_wide) for _ in range(3))
    narrow_s = min(timed(narrow, frames_narrow) for _ in range(3))
    assert 0.1 < wide_s / narrow_s < 10, (wide_s, narrow_s)


def test_the_word_loop_cache_is_bounded_in_bytes_not_entries():
    for seed in range(40):  # ~1 MB each: 40 MB asked of a 32 MiB budget
        word_loop(_words(1000, 8, seed=seed + 100))
    assert 0 < _loops.bytes <= WORD_LOOP_CACHE_BYTES
    assert len(_loops) < 40
    assert word_loop(DIGITS) is word_loop(DIGITS)  # still a cache
