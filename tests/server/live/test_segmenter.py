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


def syllables(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like sound that never pauses: noise rising and falling 20 dB at 4 Hz."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.03 + 0.27 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    noise = np.random.default_rng(seed).normal(0, 1, t.size)
    return (envelope * noise).astype(np.float32)


def test_partials_re_decode_at_most_partial_ratio_seconds_per_second_of_stream():
    """Without the ratio a 12 s utterance with a 320 ms hop re-decodes ~19 s per second."""
    config = VadConfig(RATE, max_s=12.0, hop_ms=320, partial_ratio=4.0)
    seg = Segmenter(config)
    decoded, stream = 0.0, 60.0
    audio = syllables(stream)
    for i in range(0, audio.size, 1600):  # 100 ms chunks, as a client sends them
        for event in seg.feed(audio[i : i + 1600]):
            if isinstance(event, PartialDue):
                decoded += seg.snapshot().size / RATE
    assert decoded <= 4.0 * stream + 2.0, decoded  # + the first hops, each under a second
    assert decoded >= 2.0 * stream  # partials still come: the hop grew, they did not stop


def test_an_utterance_that_never_pauses_ends_at_max_length_each_time():
    events = Segmenter(VadConfig(RATE, max_s=2.0)).feed(syllables(9.0))
    ended = [e for e in events if isinstance(e, Ended)]
    assert [e.reason for e in ended] == ["max_length"] * 4
    assert all(e.samples.size <= 2 * RATE for e in ended)


def test_constant_noise_after_silence_is_background_within_steady_s():
    """The floor fell to digital silence; noise at -40 dBFS starting after it was speech
    until the floor crept up 2.5 dB/s (28 s). A steady level is background: one short
    utterance, even with a frame of silence every 2 s pulling the floor down again."""
    noise = np.random.default_rng(2).normal(0, 0.01, 60 * RATE).astype(np.float32)
    for gap in range(0, noise.size, 2 * RATE):
        noise[gap : gap + 320] = 0.0  # one silent 20 ms frame every 2 s
    audio = np.concatenate([np.zeros(RATE, np.float32), noise])
    events = Segmenter(VadConfig(RATE, steady_s=4.0)).feed(audio)
    ended = [e for e in events if isinstance(e, Ended)]
    assert sum(e.samples.size for e in ended) <= 5 * RATE, [e.samples.size for e in ended]
    assert len(ended) <= 2
