"""What one Whisper request may cost in decoding is bounded by its audio's length: tokens
per attempt, attempts, a budget over them, prompt tokens; past the budget the request
fails alone with 422 `decode_budget_exceeded`, and every bound is per row."""

from __future__ import annotations

import asyncio
import time

import pytest
import soundfile as sf
import torch

from server.audio.reading import Audio
from server.audio.resample import resample
from server.config import REPO_ROOT
from server.models.transcript import DecodeOptions
from server.models.whisper.decoding import UNLIMITED, DecodeLimits, transcribe
from server.models.whisper.model import load_whisper
from server.serving.batcher import Work
from tests.helpers import running_client
from tests.server.models.whisper.helpers import FSDD, FSDD_ALT
from tests.server.whisper_serving.helpers import normalise, wav_bytes, whisper_settings

SIX, SEVEN = "6_theo_35.wav", "7_theo_35.wav"
# A prompt that makes Whisper say "six six six ..." to its token limit on SIX (measured:
# 553 tokens over 4 attempts, 6 s, without bounds; the review measured 20-27 s on others)
LOOPING_PROMPT = "six six six " * 300
# Past 5.3 s the budget (min_budget 384) is less than 6 attempts' caps (12 tokens/s each)
REPEATS = 15


def _fsdd(name: str) -> bytes:
    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    if not folder.is_dir():
        pytest.skip("FSDD recordings not present")
    return (folder / name).read_bytes()


def _clip(name: str) -> torch.Tensor:
    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    if not folder.is_dir():
        pytest.skip("FSDD recordings not present")
    data, rate = sf.read(str(folder / name), dtype="float32")
    return resample(torch.from_numpy(data), rate)


async def _post(client, data: bytes, **form):
    files = {"file": ("a.wav", data)}
    fields = {"model": "base", "response_format": "verbose_json", **form}
    return await client.post("/v1/audio/transcriptions", files=files, data=fields)


async def test_a_request_that_loops_past_its_decode_budget_fails_alone_with_a_code(tmp_path):
    """8 s of "six"s under a looping prompt: "six six ..." to the 99-token cap at every
    temperature (unbounded: up to 6 x 224 tokens); its batch-mates are unaffected."""
    six = _clip(SIX)
    sixes = wav_bytes(torch.cat([torch.cat([six, torch.zeros(1600)]) for _ in range(REPEATS)]))
    async with running_client(whisper_settings(tmp_path)) as client:
        looping, calm, short = await asyncio.gather(
            _post(client, sixes, prompt=LOOPING_PROMPT),
            _post(client, _fsdd(SEVEN)),
            _post(client, _fsdd(SIX), prompt=LOOPING_PROMPT),
        )
        assert looping.status_code == 422, looping.text
        assert looping.json()["error"]["code"] == "decode_budget_exceeded"
        assert calm.status_code == 200 and "7" in calm.json()["text"], calm.text
        # a short clip: 6 attempts of at most 32 tokens (min_tokens), then its best attempt
        assert short.status_code == 200, short.text
        assert len(short.json()["text"].split()) <= 32, short.text
        assert (await client.get("/readyz")).json()["status"] == "ready"


async def test_prompts_are_cut_to_max_prompt_tokens_and_zero_ignores_them(tmp_path):
    settings = whisper_settings(tmp_path, whisper={"max_prompt_tokens": 0})
    async with running_client(settings) as client:
        r = await _post(client, _fsdd(SIX), prompt=LOOPING_PROMPT)
        assert r.status_code == 200, r.text
        assert len(normalise(r.json()["text"]).split()) <= 2, r.text  # the prompt unheard


async def test_jfk_is_unchanged_under_the_default_bounds(tmp_path):
    data = (REPO_ROOT / "tests" / "data" / "jfk.flac").read_bytes()
    async with running_client(whisper_settings(tmp_path)) as client:
        r = await _post(client, data)
    assert r.status_code == 200, r.text
    text = normalise(r.json()["text"])
    assert text.startswith("and so my fellow americans") and text.endswith("for your country")


@pytest.fixture(scope="module")
def cut_whisper():
    return load_whisper(window="cut")


def test_each_attempt_stops_at_its_tokens_per_second_and_attempts_at_max_attempts(cut_whisper):
    six = _clip(SIX)  # greedy, "cut" window: "6, 6, 6, ..." to any limit (test_fallback.py)
    (free,) = transcribe(cut_whisper, [six], timestamps=True, temperatures=[0.0], fallback=False)
    assert len(free.tokens) == 224
    one = DecodeLimits(max_attempts=1)
    (capped,) = transcribe(cut_whisper, [six], timestamps=True, temperatures=[0.0], limits=one)
    assert len(capped.tokens) == 32 and capped.spent == 32 and not capped.over_budget
    assert capped.temperature == 0.0  # no second attempt


def test_the_budget_is_per_row_and_a_fused_batch_gives_each_row_its_result_alone(cut_whisper):
    clips = [_clip(SIX), _clip(SEVEN), _clip(SIX)]
    prompts = [LOOPING_PROMPT, None, None]
    limits = DecodeLimits(min_budget=64)  # two 32-token attempts
    together = transcribe(
        cut_whisper, clips, True, previous=prompts, temperatures=[0.0] * 3, limits=limits
    )
    alone = [
        transcribe(cut_whisper, [c], True, previous=[p], temperatures=[0.0], limits=limits)[0]
        for c, p in zip(clips, prompts)
    ]
    key = [(t.tokens, t.temperature, t.spent, t.over_budget) for t in together]
    assert key == [(t.tokens, t.temperature, t.spent, t.over_budget) for t in alone]
    assert together[0].over_budget and together[0].spent == limits.budget(0.4)
    assert not together[1].over_budget and "7" in together[1].text
    assert all(t.spent <= limits.budget(c.numel() / 16_000) for t, c in zip(together, clips))
    (unbounded,) = transcribe(
        cut_whisper, clips[:1], True, previous=prompts[:1], temperatures=[0.0], limits=UNLIMITED
    )
    assert unbounded.spent > 3 * together[0].spent  # what the budget saved


async def test_a_looping_row_is_charged_its_decoder_steps_in_its_tenants_engine_share(tmp_path):
    """Two digits for two tenants in one fused batch, one with a prompt that makes it loop:
    the looping tenant is charged for the decoder steps it ran, not its audio alone."""
    six, seven = Audio(_clip(SIX), 16_000), Audio(_clip(SEVEN), 16_000)
    async with running_client(whisper_settings(tmp_path)) as client:
        batcher = client.app.state.runtime.batcher
        deadline = time.monotonic() + 60
        looping = DecodeOptions(prompt=LOOPING_PROMPT)
        results = await asyncio.gather(  # both queued before the batcher forms a batch
            batcher.submit(Work(six, None, deadline, "l", "looper", looping)),
            batcher.submit(Work(seven, None, deadline, "c", "calm")),
        )
        steps = [r.decoded.steps for r in results]
        assert steps[0] > 4 * steps[1] > 0, steps
        used = batcher.fair.used
        assert used["looper"] > 3 * used["calm"] > 0, used
