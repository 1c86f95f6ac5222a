"""Window planning and stitching: cores tile the file, cuts land in pauses, and words
near or across cuts come out exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.longform.stitch import Stitcher
from server.longform.windows import Window, WindowPlan
from server.models.transcript import Decoded, FramePosteriors, WordTiming

RATE = 8_000


def _bursts(spec: list[tuple[float, float]], total: float, seed: int = 0) -> torch.Tensor:
    """Noise bursts (speech stand-ins) at (start, end) seconds over a quiet noise floor."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1e-3, int(total * RATE)).astype(np.float32)
    for a, b in spec:
        x[int(a * RATE) : int(b * RATE)] += rng.normal(0, 0.2, int(b * RATE) - int(a * RATE))
    return torch.from_numpy(x)


def _check_tiling(windows: list[Window], plan: WindowPlan) -> None:
    margin = plan.margin_s * RATE
    for w in windows:
        assert w.start < w.end and w.core_start < w.core_end
        assert w.core_start - margin <= w.start and w.end <= w.core_end + margin
        assert w.end - w.start <= plan.window_s * RATE
    for a, b in zip(windows, windows[1:]):
        assert a.core_end <= b.core_start  # in order, never overlapping


def test_cuts_fall_in_pauses_and_each_stretch_of_speech_is_its_own_window():
    spec = [(0.5, 1.2), (2.0, 2.6), (4.0, 5.5), (7.0, 7.4)]
    plan = WindowPlan(window_s=10, margin_s=1, search_s=2)
    windows = plan.plan(_bursts(spec, 9.0), RATE)
    _check_tiling(windows, plan)
    assert len(windows) == len(spec)
    for w, (a, b) in zip(windows, spec):
        assert w.core_start <= a * RATE and b * RATE <= w.core_end  # the burst, whole
        assert abs(w.start - a * RATE) <= 0.02 * RATE and abs(w.end - b * RATE) <= 0.02 * RATE


def test_silence_costs_no_window():
    spec = [(1.0, 1.5), (100.0, 100.5)]
    windows = WindowPlan(10, 1, 2).plan(_bursts(spec, 120.0), RATE)
    assert len(windows) == 2  # 119 s of quiet noise: nothing to run


def test_speech_without_pauses_is_cut_at_its_quietest_point_with_overlap():
    # 25 s of continuous "speech" with one dip at 7.5 s: the forced cut finds it
    x = _bursts([(0.0, 25.0)], 25.0)
    dip = slice(int(7.45 * RATE), int(7.55 * RATE))
    x[dip] *= 0.01
    plan = WindowPlan(window_s=10, margin_s=1, search_s=2)
    windows = plan.plan(x, RATE)
    _check_tiling(windows, plan)
    assert abs(windows[0].core_end - 7.5 * RATE) < 0.03 * RATE
    assert windows[1].start == windows[0].core_end - RATE  # one margin of overlap
    assert windows[0].end == windows[0].core_end + RATE
    assert windows[-1].core_end == x.shape[0] and windows[0].core_start == 0


def test_joined_stretches_fit_in_join_s():
    spec = [(0.5 + 1.5 * i, 1.0 + 1.5 * i) for i in range(10)]
    plan = WindowPlan(window_s=10, margin_s=1, search_s=2, join_s=4.0)
    windows = plan.plan(_bursts(spec, 16.0), RATE)
    _check_tiling(windows, plan)
    assert 3 <= len(windows) <= 5 and all(w.core_end - w.core_start <= 4 * RATE for w in windows)


@pytest.mark.parametrize(
    "bad", [dict(window_s=4, margin_s=1, search_s=1), dict(window_s=3, margin_s=1.5, search_s=0)]
)
def test_a_plan_whose_cores_cannot_hold_a_search_is_refused(bad):
    with pytest.raises(ValueError):
        WindowPlan(**bad)


def _decoded(words: list[tuple[str, float, float]]) -> Decoded:
    timings = [WordTiming(w, a, b) for w, a, b in words]
    n = 100
    frames = FramePosteriors(
        np.arange(n, dtype=np.float32) * 0.04,
        np.full(n, -0.1, np.float32),
        np.full(n, -0.5, np.float32),
        0.04,
    )
    return Decoded(" ".join(w for w, _, _ in words), timings, n, frames=frames)


def test_words_in_the_overlap_are_kept_once_and_a_word_straddling_a_cut_by_its_centre():
    # cut at 5.0 s; both windows see 4.0-6.0 s. "four" (4.2-4.6) is before the cut,
    # "cut" (4.8-5.4) straddles it with its centre at 5.1: the second window keeps it.
    w0 = Window(0, 0, 6 * RATE, 0, 5 * RATE)
    w1 = Window(1, 4 * RATE, 10 * RATE, 5 * RATE, 10 * RATE)
    stitcher = Stitcher(RATE)
    first = stitcher.add(w0, _decoded([("one", 1.0, 1.3), ("four", 4.2, 4.6), ("cut", 4.8, 5.4)]))
    # the second window's times are its own: 4.0 s earlier
    second = stitcher.add(w1, _decoded([("four", 0.2, 0.6), ("cut", 0.8, 1.4), ("nine", 5.0, 5.3)]))
    assert [w.word for w in first] == ["one", "four"]
    assert [w.word for w in second] == ["cut", "nine"]
    assert stitcher.text == "one four cut nine"
    assert [round(w.start_s, 2) for w in stitcher.words] == [1.0, 4.2, 4.8, 9.0]
    frames = stitcher.frames()
    assert np.all(np.diff(frames.times) > 0)  # no frame twice
    assert frames.times[0] == 0 and frames.times[-1] < 10


def test_windows_must_come_in_order():
    stitcher = Stitcher(RATE)
    with pytest.raises(ValueError):
        stitcher.add(Window(1, 0, RATE, 0, RATE), _decoded([]))


def test_segment_confidence_is_the_mean_best_path_log_prob_and_the_all_blank_probability():
    n = 50
    frames = FramePosteriors(
        np.arange(n, dtype=np.float32) * 0.04,
        np.linspace(-1.0, 0.0, n, dtype=np.float32),
        np.full(n, np.log(0.5), np.float32),
        0.04,
    )
    avg, no_speech = frames.between(0.0, 0.38)  # frames 0..9 start before 0.38 s
    assert avg == pytest.approx(float(np.linspace(-1.0, 0.0, n)[:10].mean()), rel=1e-5)
    assert no_speech == pytest.approx(0.5**10, rel=1e-4)
    assert frames.between(5.0, 6.0) is None
