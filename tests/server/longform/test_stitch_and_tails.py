"""Stitching rules that Whisper's windows need (its word times come from attention, not
frames), tails after a window that stopped early, and silence that costs no window."""

from __future__ import annotations

import numpy as np
import torch

from server.config import LongformSettings
from server.longform.policy import tails, window_plan
from server.longform.stitch import Stitcher
from server.longform.tails import Tails
from server.longform.windows import Window, WindowPlan
from server.models.transcript import Decoded, WordTiming

RATE = 16_000


def _decoded(
    words: list[tuple[str, float, float]],
    segments: list[int] | None = None,
    no_speech: float | None = 0.1,
    logprob: float | None = -0.3,
) -> Decoded:
    segs = segments or [None] * len(words)
    timings = [WordTiming(w, a, b, s) for (w, a, b), s in zip(words, segs)]
    text = " ".join(w for w, _, _ in words)
    return Decoded(text, timings, len(words), avg_logprob=logprob, no_speech_prob=no_speech)


# a forced cut at 5.0 s, both windows hear 4.0-6.0 s
W0 = Window(0, 0, 6 * RATE, 0, 5 * RATE)
W1 = Window(1, 4 * RATE, 10 * RATE, 5 * RATE, 10 * RATE)


def test_a_word_the_two_windows_time_on_either_side_of_a_cut_is_kept_once():
    stitcher = Stitcher(RATE)
    stitcher.add(W0, _decoded([("things", 4.3, 4.7), ("with", 4.75, 4.98)]))  # centre 4.87
    # the second window times "with" at 4.8-5.2 (centre 5.0: its core): the same word,
    # so it continues after its own copy of it
    stitcher.add(W1, _decoded([("things", 0.3, 0.7), ("with", 0.8, 1.2), ("her", 1.2, 1.5)]))
    assert stitcher.text == "things with her"


def test_a_word_the_two_windows_time_the_other_way_round_is_not_lost():
    stitcher = Stitcher(RATE)
    stitcher.add(W0, _decoded([("things", 4.3, 4.7), ("with", 4.95, 5.2)]))  # centre 5.08
    # the second window times "with" at 4.7-4.98 (centre 4.84: not its core)
    stitcher.add(W1, _decoded([("things", 0.3, 0.7), ("with", 0.7, 0.98), ("her", 1.2, 1.5)]))
    assert stitcher.text == "things with her"


def test_after_a_window_that_stopped_early_the_next_keeps_what_its_margin_heard():
    stitcher = Stitcher(RATE)
    stitcher.add(W0, _decoded([("one", 1.0, 1.3), ("two", 3.5, 3.8)]))  # text ends 1.2 s early
    stitcher.add(W1, _decoded([("three", 0.1, 0.4), ("four", 0.5, 0.8), ("five", 1.5, 1.9)]))
    assert stitcher.text == "one two three four five"


def test_word_times_are_clamped_to_the_audio_and_monotone():
    stitcher = Stitcher(RATE)
    last = Window(0, 2 * RATE, 5 * RATE, 2 * RATE, 5 * RATE)  # the file ends at 5 s
    # Whisper's timestamps may run past the clip (its window is 30 s)
    stitcher.add(last, _decoded([("a", -0.2, 0.3), ("b", 2.8, 3.6), ("c", 3.4, 4.0)]))
    assert stitcher.text == "a b c"
    assert [(w.start_s, w.end_s) for w in stitcher.words] == [(2.0, 2.3), (4.8, 5.0), (5.0, 5.0)]


def test_a_window_whisper_calls_empty_adds_nothing():
    stitcher = Stitcher(RATE)
    window = Window(0, 0, 28 * RATE, 0, 28 * RATE)
    assert stitcher.add(window, _decoded([(".", 0.0, 0.5), (".", 0.5, 1.0)])) == []  # hiss
    silent = _decoded([("you", 0.0, 0.3)], no_speech=0.9, logprob=-1.2)  # openai's rule
    assert stitcher.add(Window(1, 0, RATE, 0, RATE), silent) == []
    # openai-whisper keeps a likely text however high no_speech_prob is: so do we
    likely = _decoded([("you", 0.0, 0.3)], no_speech=0.9, logprob=-0.7)
    assert [w.word for w in stitcher.add(Window(2, 0, RATE, 0, RATE), likely)] == ["you"]
    ctc = _decoded([("seven", 0.0, 0.3)], no_speech=None, logprob=None)  # no such numbers
    assert [w.word for w in stitcher.add(Window(3, 0, RATE, 0, RATE), ctc)] == ["seven"]


def test_segments_are_runs_of_one_windows_one_segment_with_its_numbers():
    stitcher = Stitcher(RATE)
    words = [("a", 0.0, 0.2), ("b", 0.2, 0.4), ("c", 1.0, 1.2)]
    stitcher.add(Window(0, 0, 2 * RATE, 0, 2 * RATE), _decoded(words, [0, 0, 1], 0.05, -0.2))
    stitcher.add(Window(1, 3 * RATE, 4 * RATE, 3 * RATE, 4 * RATE), _decoded(words[:1], [0]))
    assert [(s.text, s.start_s, s.end_s, s.avg_logprob) for s in stitcher.segments] == [
        ("a b", 0.0, 0.4, -0.2),
        ("c", 1.0, 1.2, -0.2),
        ("a", 3.0, 3.2, -0.3),
    ]
    ctc = Stitcher(RATE)  # words without segments: none (the formats group by pauses)
    ctc.add(Window(0, 0, 2 * RATE, 0, 2 * RATE), _decoded(words))
    assert ctc.segments == [] and ctc.text == "a b c"


def test_a_window_whose_words_stop_early_gets_a_tail_over_the_rest_and_at_most_two():
    tail_of = Tails(min_gap_s=1.5, margin_s=1.0, per_window=2)
    window = Window(0, 10 * RATE, 36 * RATE, 10 * RATE, 37 * RATE)  # 26 s, at pauses
    early = _decoded([("country.", 10.5, 10.9)])
    tail = tail_of.after(window, early, RATE)
    assert tail == Window(0, int(19.9 * RATE), 36 * RATE, int(20.9 * RATE), 37 * RATE, 1)
    assert tail_of.after(window, _decoded([("end", 25.0, 25.8)]), RATE) is None  # reached it
    assert tail_of.after(window, _decoded([(".", 0.0, 1.0)]), RATE) is None  # heard nothing
    again = Window(0, tail.start, tail.end, tail.core_start, tail.core_end, 2)
    assert tail_of.after(again, early, RATE) is None  # the last one allowed
    # a tail continues the stitch right after its window, before the next planned one
    stitcher = Stitcher(RATE)
    stitcher.add(window, early)
    stitcher.add(tail, _decoded([("country.", 0.5, 0.9), ("She", 1.5, 1.8)]))
    stitcher.add(Window(1, 40 * RATE, 41 * RATE, 40 * RATE, 41 * RATE), _decoded([("x", 0, 1)]))
    assert stitcher.text == "country. She x"


def test_ctc_models_keep_their_windows_and_get_no_tails():
    settings = LongformSettings()
    assert window_plan(settings, None) == WindowPlan(10.0, 1.0, 2.0, 0.25, 15.0, 0.0)
    assert tails(settings, None) is None
    whisper = window_plan(settings, 30.0)
    assert 29.9 < whisper.window_s < 30 and whisper.join_s == 28 and tails(settings, 30.0)


def test_digital_silence_and_dither_cost_no_window_even_alone():
    rng = np.random.default_rng(0)
    plan = window_plan(LongformSettings(), 30.0)
    for samples in (np.zeros(RATE * 120), rng.standard_normal(RATE * 120) * 10 ** (-90 / 20)):
        assert plan.plan(torch.from_numpy(samples.astype(np.float32)), RATE) == []
