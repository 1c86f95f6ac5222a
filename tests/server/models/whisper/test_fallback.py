"""Temperature fallback: a greedy decode that loops is redone hotter, row by row, and a
row's result never depends on its batch."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from server.audio.resample import resample
from server.models.whisper.decoding import (
    Transcript,
    best_attempt,
    needs_fallback,
    temperature_schedule,
    transcribe,
)
from server.models.whisper.model import load_whisper
from tests.server.models.whisper.helpers import FSDD, FSDD_ALT

# Greedy plain Whisper tiny.en, `cut` window: "6, 6, 6, ..." to max_tokens (measured)
LOOPING = "6_theo_35.wav"
CALM = "7_theo_35.wav"


def test_the_schedule_climbs_by_0_2_to_1_from_the_requested_temperature():
    assert temperature_schedule(0.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert temperature_schedule(0.5) == [0.5, 0.7, 0.9]
    assert temperature_schedule(1.0) == [1.0]


def test_a_loop_or_an_unlikely_decode_falls_back_but_unlikely_silence_does_not():
    assert needs_fallback("6, " * 70, avg_logprob=-0.1, no_speech_prob=0.0)  # a loop
    assert needs_fallback("six", avg_logprob=-1.5, no_speech_prob=0.1)  # unlikely
    assert not needs_fallback("six", avg_logprob=-1.5, no_speech_prob=0.9)  # silence
    assert not needs_fallback("six", avg_logprob=-0.3, no_speech_prob=0.1)


def test_when_every_attempt_fails_the_likeliest_that_does_not_loop_is_kept():
    loop = Transcript("6, " * 70, [], -0.1, 0.0, temperature=0.0)
    poor = Transcript("sticks", [], -2.5, 0.0, temperature=0.2)
    better = Transcript("six", [], -1.2, 0.0, temperature=1.0)
    assert best_attempt([loop, poor, better]) is better
    assert best_attempt([loop]) is loop


@pytest.fixture(scope="module")
def cut_whisper():
    return load_whisper(window="cut")


@pytest.fixture(scope="module")
def theo():
    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    if not folder.is_dir():
        pytest.skip("FSDD recordings not present")
    out = {}
    for name in (LOOPING, CALM):
        data, rate = sf.read(str(folder / name), dtype="float32")
        out[name] = resample(torch.from_numpy(data), rate)
    return out


@pytest.mark.slow
def test_a_looping_greedy_decode_is_redone_hotter_and_its_batch_does_not_change_it(
    cut_whisper, theo
):
    (greedy,) = transcribe(cut_whisper, [theo[LOOPING]], timestamps=True, max_tokens=64)
    assert len(greedy.tokens) == 64 and needs_fallback(greedy.text, greedy.avg_logprob, 0.0)
    clips = [theo[LOOPING], theo[CALM], theo[LOOPING]]
    together = transcribe(
        cut_whisper, clips, timestamps=True, max_tokens=64, temperatures=[0.0, 0.0, 0.4]
    )
    alone = [
        transcribe(cut_whisper, [c], timestamps=True, max_tokens=64, temperatures=[t])[0]
        for c, t in zip(clips, [0.0, 0.0, 0.4])
    ]
    assert [(t.tokens, t.temperature) for t in together] == [
        (a.tokens, a.temperature) for a in alone
    ]
    fixed = together[0]
    assert fixed.temperature > 0 and len(fixed.tokens) < 16  # no longer a loop
    assert "6" in fixed.text or "six" in fixed.text.lower()
    assert together[1].temperature == 0.0  # a calm row never falls back
    assert together[2].temperature >= 0.4  # a requested temperature is where it starts
