"""The VAD/endpointing segmenter on synthetic levels and on a real FSDD recording."""

from __future__ import annotations

import numpy as np

from server.live.segmenter import (
    Ended,
    PartialDue,
    Segmenter,
    SpeechStarted,
    VadConfig,
)

RATE = 16_000


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def quiet(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1e-4, int(seconds * RATE)).astype(np.float32)


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def test_speech_between_silences_is_one_utterance_with_partials_and_a_silence_endpoint():
    seg = Segmenter(VadConfig(RATE, silence_ms=400, prefix_ms=100, suffix_ms=100, hop_ms=200))
    events = seg.feed(np.concatenate([quiet(0.5), tone(1.0), quiet(0.6)]))
    assert kinds(events)[0] == "SpeechStarted"
    assert kinds(events).count("PartialDue") >= 4
    (ended,) = [e for e in events if isinstance(e, Ended)]
    assert ended.reason == "silence"
    started = events[0]
    assert isinstance(started, SpeechStarted)
    assert abs(started.at / RATE - 0.5) < 0.03 and abs(ended.start / RATE - 0.4) < 0.03
    # decoded: the 100 ms prefix, the speech, 100 ms past it; not the endpointing silence
    assert abs(ended.samples.size / RATE - 1.2) < 0.05


def test_fed_in_odd_chunk_sizes_gives_the_same_events_as_at_once():
    audio = np.concatenate([quiet(0.3), tone(0.7), quiet(0.7), tone(0.5), quiet(0.7)])
    whole = Segmenter(VadConfig(RATE)).feed(audio)
    seg = Segmenter(VadConfig(RATE))
    pieces = []
    for i in range(0, audio.size, 777):
        pieces += seg.feed(audio[i : i + 777])
    assert kinds(pieces) == kinds(whole)
    ends = [(e.start, e.end) for e in pieces if isinstance(e, Ended)]
    assert ends == [(e.start, e.end) for e in whole if isinstance(e, Ended)] and len(ends) == 2


def test_an_utterance_never_runs_past_max_length():
    seg = Segmenter(VadConfig(RATE, max_s=1.0))
    ended = [e for e in seg.feed(np.concatenate([quiet(0.2), tone(3.5)])) if isinstance(e, Ended)]
    assert [e.reason for e in ended] == ["max_length"] * 3
    assert all(e.samples.size <= RATE for e in ended)


def test_commit_ends_the_utterance_now_and_clear_drops_it():
    seg = Segmenter(VadConfig(RATE))
    seg.feed(np.concatenate([quiet(0.2), tone(0.5)]))
    (ended,) = seg.commit()
    assert isinstance(ended, Ended) and ended.reason == "commit" and not seg.in_speech
    assert seg.commit() == []  # nothing since
    seg.feed(tone(0.3))
    assert seg.in_speech and seg.snapshot().size > 0
    seg.clear()
    assert not seg.in_speech and seg.snapshot().size == 0


def test_background_noise_alone_is_not_speech_at_any_steady_level():
    for level in (1e-4, 3e-3, 3e-2):  # -80, -50, -30 dBFS white noise
        noise = np.random.default_rng(1).normal(0, level, 5 * RATE).astype(np.float32)
        events = Segmenter(VadConfig(RATE)).feed(noise)
        assert not [e for e in events if isinstance(e, SpeechStarted)], level


def test_a_real_recording_in_its_room_tone_is_one_utterance(fsdd_test):
    from server.data.manifest import load_audio

    clip = load_audio(fsdd_test[0].audio).numpy()
    audio = np.concatenate([clip[:800]] * 10 + [clip] + [clip[-800:]] * 20)
    events = Segmenter(VadConfig(RATE)).feed(audio)
    assert kinds(events).count("SpeechStarted") == 1
    (ended,) = [e for e in events if isinstance(e, Ended)]
    assert ended.reason == "silence" and ended.samples.size >= 0.9 * clip.size
    assert isinstance(events[0], SpeechStarted) and not isinstance(events[0], PartialDue)


def test_commit_outside_speech_makes_the_audio_since_the_last_utterance_one():
    seg = Segmenter(VadConfig(RATE, max_s=2.0))
    assert not seg.feed(quiet(3.0)) and seg.commit() == []  # nothing above -50 dBFS: nothing
    seg = Segmenter(VadConfig(RATE, max_s=2.0))
    assert not seg.feed(tone(3.0))  # steady from its first frame: the VAD hears no speech
    started, ended = seg.commit()
    assert isinstance(started, SpeechStarted) and isinstance(ended, Ended)
    assert ended.reason == "commit" and ended.samples.size == 2 * RATE  # at most max_s
    assert ended.end == seg.position == 3 * RATE
