"""Long files from hostile tenants: bounded memory, bounded queue share, no starving
of others' short requests, nothing left running for a client that has gone."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from load_tests.long_audio import long_fsdd, wav
from server.config import AudioSettings, BatchSettings, LongformSettings, QueueShareSettings
from server.errors import ClientGone, Overloaded
from server.serving.request import TranscriptionRequest
from tests.helpers import live_server, make_settings, running_client, wait_until
from tests.security.helpers import auth, keyed_settings
from tests.server.audio.test_reading import _flac_with_claimed_length, _tone

SPEAKER = "jackson"


@pytest.fixture(scope="module")
def long_wav(fsdd_root) -> bytes:
    samples, _ = long_fsdd(fsdd_root, 30, seed=7, speaker=SPEAKER)
    return wav(samples)


async def test_a_header_claiming_more_than_the_limit_is_refused_before_decoding(tmp_path):
    settings = make_settings(tmp_path, audio=AudioSettings(max_duration_s=600))
    claims_3_hours = _flac_with_claimed_length(_tone(1.0, 16_000), 16_000, 3 * 3600 * 16_000)
    async with running_client(settings) as client:
        began = time.monotonic()
        r = await client.post(
            "/v1/audio/transcriptions", files={"file": ("a.flac", claims_3_hours)}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long", r.text
        assert time.monotonic() - began < 2
        assert client.app.state.runtime.transcription.budget.held == 0


async def test_the_held_samples_cap_refuses_a_second_long_file_at_once_and_frees_on_finish(
    tmp_path, long_wav
):
    # one 30 s file at 8 kHz holds 240,000 samples; the cap holds one, not two
    settings = make_settings(tmp_path, longform=LongformSettings(max_held_samples=350_000))
    async with running_client(settings) as client:
        service = client.app.state.runtime

        async def post():
            return await client.post(
                "/v1/audio/transcriptions",
                files={"file": ("a.wav", long_wav)},
                data={"model": "base"},
            )

        first = asyncio.create_task(post())
        while service.transcription.budget.held == 0:
            await asyncio.sleep(0.005)
        began = time.monotonic()
        second = await post()
        assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
        assert second.headers["retry-after"] == "5" and time.monotonic() - began < 1
        assert (await first).status_code == 200
        assert service.transcription.budget.held == 0
        assert (await post()).status_code == 200  # the cap is free again


async def test_a_long_request_whose_client_has_gone_stops_submitting_windows(tmp_path, long_wav):
    async with running_client(make_settings(tmp_path)) as client:
        service = client.app.state.runtime
        submitted = []
        real_submit = service.batcher.submit

        async def counting_submit(work):  # a spy: every window still goes to the real batcher
            submitted.append(work.request_id)
            return await real_submit(work)

        service.batcher.submit = counting_submit
        asked = 0

        async def gone() -> bool:  # the client disconnects after its third window
            nonlocal asked
            asked += 1
            return asked > 3

        run = await service.transcription.open(
            TranscriptionRequest(long_wav, f"fsdd-{SPEAKER}"), gone=gone
        )
        assert len(run.windows) > 10
        with pytest.raises(ClientGone):
            await service.transcription.transcribe(
                TranscriptionRequest(long_wav, f"fsdd-{SPEAKER}"), gone=gone
            )
        run.close()
        # windows 0-1 went in at once, window 2 when 0 was done (if its task ran before the
        # client was found gone); none after
        assert 2 <= len(submitted) <= 3
        await asyncio.sleep(0.5)
        assert service.batcher.queue_depth == 0 and service.transcription.budget.held == 0


async def test_a_stream_closed_early_withdraws_its_windows(tmp_path, long_wav):
    async with running_client(make_settings(tmp_path)) as client:
        service = client.app.state.runtime
        run = await service.transcription.open(TranscriptionRequest(long_wav, f"fsdd-{SPEAKER}"))
        pieces = run.pieces()
        first = await anext(pieces)
        assert first
        await pieces.aclose()  # what a streaming response does when its client goes
        assert service.batcher.queue_depth == 0 and service.transcription.budget.held == 0


async def test_a_long_file_from_one_tenant_does_not_push_out_or_starve_anothers_short_requests(
    tmp_path, fsdd_root, long_wav
):
    # a small queue: each tenant may hold 2 waiting requests; a long file keeps 2 windows in
    # flight, so it stays inside its own share and the other tenant's requests get in
    settings = keyed_settings(
        tmp_path,
        "disk",
        batch=BatchSettings(max_queue=8),
        queue_share=QueueShareSettings(tenant_fraction=0.25),
    )
    short = (fsdd_root / f"3_{SPEAKER}_5.wav").read_bytes()
    async with running_client(settings) as client:
        service = client.app.state.runtime
        depth = []
        long_done = asyncio.Event()

        async def long_file():
            r = await client.post(
                "/v1/transcribe?task_id=fsdd-jackson",
                content=long_wav,
                headers={"content-type": "audio/wav", **auth("acme")},
            )
            long_done.set()
            return r

        async def watch():
            while not long_done.is_set():
                pending = service.batcher._pending
                depth.append(sum(1 for p in pending if p.work.tenant == "acme"))
                await asyncio.sleep(0.002)

        async def shorts():
            while service.transcription.budget.held == 0:
                await asyncio.sleep(0.002)
            out = []
            for _ in range(5):
                r = await client.post(
                    "/v1/transcribe?task_id=base",
                    content=short,
                    headers={"content-type": "audio/wav", **auth("globex")},
                )
                out.append((r.status_code, long_done.is_set()))
            return out

        long_r, _, short_rs = await asyncio.gather(long_file(), watch(), shorts())
        assert long_r.status_code == 200, long_r.text
        assert [s for s, _ in short_rs] == [200] * 5
        assert not any(done for _, done in short_rs[:3])  # served while the long file ran
        assert max(depth) <= settings.longform.windows_in_flight


async def test_a_long_file_of_silence_runs_no_window_and_answers_an_empty_transcript(tmp_path):
    async with running_client(make_settings(tmp_path)) as client:
        silence = wav(np.zeros(8_000 * 60, np.float32))
        r = await client.post(
            "/v1/audio/transcriptions",
            files={"file": ("s.wav", silence)},
            data={"response_format": "verbose_json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "" and r.json()["segments"] == []
        assert r.json()["duration"] == 60.0


async def test_a_later_window_that_finds_the_queue_full_waits_for_room_instead_of_failing(
    tmp_path, long_wav
):
    async with running_client(make_settings(tmp_path)) as client:
        service = client.app.state.runtime
        task = f"fsdd-{SPEAKER}"
        expected = (
            await service.transcription.transcribe(TranscriptionRequest(long_wav, task))
        ).text
        run = await service.transcription.open(TranscriptionRequest(long_wav, task))
        longest = max(w.end - w.start for w in run.windows)
        run.close()
        # room for any one window, never for two: every second window in flight is refused
        service.batcher.settings = service.batcher.settings.model_copy(
            update={"max_queued_samples": longest}
        )
        refused = 0
        real_submit = service.batcher.submit

        async def counting_submit(work):  # a spy: the real batcher answers every call
            nonlocal refused
            try:
                return await real_submit(work)
            except Overloaded:
                refused += 1
                raise

        service.batcher.submit = counting_submit
        assert (
            await service.transcription.transcribe(TranscriptionRequest(long_wav, task))
        ).text == expected
        assert refused > 0


def test_a_streaming_client_that_disconnects_stops_its_windows_on_a_real_socket(
    tmp_path, fsdd_root
):
    samples, _ = long_fsdd(fsdd_root, 240, seed=8, speaker=SPEAKER)  # ~200 windows
    with live_server(make_settings(tmp_path)) as url:

        def depths(n: int) -> list[int]:
            out = []
            for _ in range(n):
                out.append(httpx.get(f"{url}/readyz").json()["queue_depth"])
                time.sleep(0.02)
            return out

        with httpx.Client(base_url=url, timeout=60) as client:
            files = {"file": ("long.wav", wav(samples))}
            data = {"model": f"fsdd-{SPEAKER}", "stream": "true"}
            with client.stream("POST", "/v1/audio/transcriptions", files=files, data=data) as r:
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
                busy = depths(20)  # windows wait in the queue while the stream runs
            # the response is closed here: the client has gone
        wait_until(lambda: depths(1) == [0], timeout_s=10, what="the queue drains")
        idle = depths(20)
    assert max(busy) > 0
    assert idle == [0] * 20  # no window submitted for a client that is not there


async def test_one_tenants_long_files_cannot_take_the_memory_others_long_files_need(
    tmp_path, long_wav, fsdd_root
):
    # the 30 s file holds 240,000 samples: acme may hold one, the server three
    settings = keyed_settings(
        tmp_path,
        "disk",
        longform=LongformSettings(max_held_samples=750_000, max_held_samples_per_tenant=300_000),
    )
    short = (fsdd_root / f"3_{SPEAKER}_5.wav").read_bytes()
    async with running_client(settings) as client:
        service = client.app.state.runtime

        async def post(who: str, audio: bytes):
            return await client.post(
                "/v1/transcribe?task_id=base",
                content=audio,
                headers={"content-type": "audio/wav", **auth(who)},
            )

        first = asyncio.create_task(post("acme", long_wav))
        while service.transcription.budget.by_tenant.get("acme", 0) == 0:
            await asyncio.sleep(0.005)
        second = await post("acme", long_wav)  # past acme's share: refused at once
        assert second.status_code == 503 and second.json()["error"]["code"] == "overloaded"
        assert "share" in second.json()["error"]["message"]
        other_long, other_short = await asyncio.gather(
            post("globex", long_wav), post("globex", short)
        )
        assert other_long.status_code == other_short.status_code == 200
        assert (await first).status_code == 200
        assert (
            service.transcription.budget.held == 0 and service.transcription.budget.by_tenant == {}
        )
