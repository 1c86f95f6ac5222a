"""A hostile tenant's request fails, at most, itself: never its batch-mates of other tenants.

A real uvicorn server with API keys; tenant "victim" transcribes FSDD clips with its
own heads while tenant "mallory" sends odd-but-decodable audio (any length from zero
samples to the limit, awkward rates, many channels, silence, DC, clipping, every
container the server reads) and uses odd heads and vocabularies, in the same bursts.
"""

from __future__ import annotations

import asyncio
import io
import json
import math

import httpx
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.auth import ApiKey
from tests.helpers import fsdd_bytes, live_server, make_settings

ADMIN, VICTIM, MALLORY = "admin-key-iso", "victim-key-iso", "mallory-key-iso"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
MAX_DURATION_S = 20.0  # the server's limit in this test: the fuzz reaches it in seconds
GOOD_PER_BURST = 6
RSS_GROWTH_LIMIT = 600 * 2**20  # bytes: decoded arrays must not pile up across requests


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class World:
    """The live server, the victim's clips with their solo transcripts, mallory's heads."""

    def __init__(self, url: str, fsdd_test) -> None:
        self.url = url
        self.good: list[tuple[str, bytes, str]] = []  # (task, audio, solo transcript)
        self.mallory_tasks = ["base"]
        with httpx.Client(base_url=url, timeout=60) as http:
            for speaker in SPEAKERS:
                head = http.get(f"/v1/tasks/fsdd-{speaker}/head", headers=_auth(ADMIN)).content
                r = http.put(
                    f"/v1/tasks/victim-{speaker}",
                    files={"file": ("h.safetensors", head)},
                    headers=_auth(VICTIM),
                )
                assert r.status_code == 200, r.text
            for u in fsdd_test[::25][:24]:  # every speaker, every digit
                task, audio = f"victim-{u.task.removeprefix('fsdd-')}", fsdd_bytes(u)
                r = http.post(
                    f"/v1/transcribe?task_id={task}", content=audio, headers=_auth(VICTIM)
                )
                assert r.status_code == 200, r.text
                self.good.append((task, audio, r.json()["text"]))
            self.mallory_tasks += self._register_odd_heads(http)

    @staticmethod
    def _register_odd_heads(http: httpx.Client) -> list[str]:
        """Heads mallory may register: whatever the server accepts, she will use."""
        head = http.get("/v1/tasks/fsdd-george/head", headers=_auth(ADMIN)).content
        long_words = [  # 1,000 distinct words: as costly a vocabulary as an upload may be
            "".join(chr(97 + (i // 26**k) % 26) for k in range(3)) + "word" for i in range(1000)
        ]
        accepted = []
        for task, vocabulary in [
            ("mallory-plain", None),
            ("mallory-huge-vocabulary", json.dumps(long_words)),
            ("mallory-one-letter", json.dumps(["a"])),
        ]:
            data = {} if vocabulary is None else {"vocabulary": vocabulary}
            r = http.put(
                f"/v1/tasks/{task}",
                files={"file": ("h.safetensors", head)},
                data=data,
                headers=_auth(MALLORY),
            )
            assert r.status_code in (200, 413, 422), r.text
            if r.status_code == 200:
                accepted.append(task)
        return accepted

    def burst(self, hostile_audio: bytes, hostile_task: str, offset: int) -> tuple[list, object]:
        async def go():
            async with httpx.AsyncClient(base_url=self.url, timeout=120) as http:
                good = [self.good[(offset + i) % len(self.good)] for i in range(GOOD_PER_BURST)]
                calls = [
                    http.post(f"/v1/transcribe?task_id={t}", content=a, headers=_auth(VICTIM))
                    for t, a, _ in good
                ]
                hostile = http.post(
                    f"/v1/transcribe?task_id={hostile_task}",
                    content=hostile_audio,
                    headers=_auth(MALLORY),
                )
                half = len(calls) // 2
                responses = await asyncio.gather(*calls[:half], hostile, *calls[half:])
                return list(zip(good, responses[:half] + responses[half + 1 :])), responses[half]

        return asyncio.run(go())


@pytest.fixture(scope="module")
def world(tmp_path_factory, fsdd_test):
    tmp = tmp_path_factory.mktemp("isolation")
    settings_ = make_settings(
        tmp,
        open_access=False,
        api_keys=[
            ApiKey(key=ADMIN, admin=True),
            ApiKey(key=VICTIM, tenant="victim"),
            ApiKey(key=MALLORY, tenant="mallory"),
        ],
        audio={"max_duration_s": MAX_DURATION_S},
        batch={"max_wait_ms": 30},
    )
    with live_server(settings_) as url:
        yield World(url, fsdd_test)


RATES = st.one_of(
    st.sampled_from([1000, 7999, 8000, 11025, 16000, 22050, 44100, 44101, 48000, 96000, 383987]),
    st.integers(1000, 384_000),
)
CONTAINERS = [
    ("WAV", "PCM_16"),
    ("WAV", "FLOAT"),
    ("WAV", "PCM_U8"),
    ("FLAC", "PCM_16"),
    ("OGG", "VORBIS"),
]


class Clip(bytes):
    """Audio bytes that print as what they hold, not as 70 kB of hex."""

    description = ""

    def __repr__(self) -> str:
        return f"Clip({self.description}, {len(self)} bytes)"


def _clip(data: bytes, description: str) -> Clip:
    clip = Clip(data)
    clip.description = description
    return clip


@st.composite
def odd_audio(draw) -> Clip:
    rate = draw(RATES)
    channels = draw(st.integers(1, 8))
    # libvorbis's encoder crashes the process above ~200 kHz: no OGG at those rates
    containers = [c for c in CONTAINERS if c[0] != "OGG" or rate <= 192_000]
    container, subtype = draw(st.sampled_from(containers))
    limit = int(MAX_DURATION_S * rate)
    frames = draw(
        st.one_of(
            st.integers(0, 600),  # zero samples up to a few milliseconds
            st.integers(0, limit),
            st.sampled_from([limit - 1, limit, limit + 1]),
        )
    )
    frames = min(frames, 6_000_000 // channels)  # what this test can afford to synthesize
    kind = draw(st.sampled_from(["silence", "dc", "clipped", "noise", "sine"]))
    t = np.arange(frames, dtype=np.float64)[:, None] / rate
    if kind == "silence":
        x = np.zeros((frames, channels))
    elif kind == "dc":
        x = np.full((frames, channels), draw(st.sampled_from([-1.0, -0.5, 0.999, 1.0])))
    elif kind == "clipped":
        x = np.clip(40 * np.sin(2 * math.pi * 440 * t), -1, 1) * np.ones(channels)
    elif kind == "noise":
        x = np.random.default_rng(frames).uniform(-1, 1, (frames, channels))
    else:
        x = 0.5 * np.sin(2 * math.pi * draw(st.floats(20, rate / 2)) * t) * np.ones(channels)
    out = io.BytesIO()
    try:
        sf.write(out, x.astype(np.float32), rate, format=container, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return _clip(b"", f"{container} cannot hold {rate} Hz x {channels}")  # send nothing
    return _clip(out.getvalue(), f"{kind} {frames} frames {rate} Hz x {channels} {container}")


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(audio=odd_audio(), which=st.integers(0, 100), offset=st.integers(0, 100))
def test_odd_audio_and_heads_from_one_tenant_never_fail_another_tenants_burst(
    world, audio, which, offset
):
    before = _rss()
    task = world.mallory_tasks[which % len(world.mallory_tasks)]
    good, hostile = world.burst(audio, task, offset)
    for (_, _, expected), response in good:
        assert response.status_code == 200, response.text
        assert response.json()["text"] == expected
    assert hostile.status_code < 500, hostile.text  # refused with a 4xx at worst
    if hostile.status_code != 200:
        assert hostile.json()["error"]["code"]
    assert _rss() - before < RSS_GROWTH_LIMIT
