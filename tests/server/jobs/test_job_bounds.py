"""A job's cost is bounded before it is paid, and a cancel stops it in every phase.

Feature memory is estimated at creation (seconds of audio x augmented copies x the model
kind's feature bytes per second) and refused past `HRA_JOBS__MAX_FEATURE_BYTES`; a cancel
during the feature phase ends the job within about a second, not after the phase.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
import zipfile

from server.config import JobSettings
from server.jobs.model_kinds import CtcHeads
from tests.helpers import running_client
from tests.security.helpers import auth, keyed_settings
from tests.server.jobs.archives import fsdd_zip, upload


def job_settings(tmp_path, **jobs):
    return keyed_settings(tmp_path, "disk", state_dir=tmp_path / "state", jobs=JobSettings(**jobs))


async def make_dataset(client, fsdd_root, takes=range(0, 1)) -> dict:
    archive = fsdd_zip(fsdd_root, "theo", takes)
    r = await client.post("/v1/files", headers=auth("acme"), **upload(archive))
    assert r.status_code == 200, r.text
    return r.json()


def long_silence_zip(clips: int, seconds: int) -> bytes:
    """`clips` clips of `seconds` s of 8 kHz silence: hours of audio in a few hundred KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(clips):
            clip = io.BytesIO()
            with wave.open(clip, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(bytes(2 * 8000 * seconds))
            z.writestr(f"{i}.wav", clip.getvalue())
        rows = [json.dumps({"audio": f"{i}.wav", "text": "zero"}) for i in range(clips)]
        z.writestr("manifest.jsonl", "\n".join(rows) + "\n")
    return buffer.getvalue()


async def job_status(client, job_id: str) -> dict:
    return (await client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth("acme"))).json()


async def test_a_job_whose_augmented_features_pass_the_memory_bound_is_refused_at_creation(
    tmp_path, fsdd_root
):
    async with running_client(job_settings(tmp_path, max_feature_bytes=2_000_000)) as client:
        dataset = await make_dataset(client, fsdd_root)  # 10 clips, ~4 s
        plain = dataset["audio_seconds"] * CtcHeads.feature_bytes_per_s
        assert plain < 2_000_000 < 10 * plain  # one copy fits; ten do not
        body = {"model": "acme-big", "training_file": dataset["id"]}
        # speed 0.5: 2 copies' length; 4 tempo copies of each at 0.5: x5 -> 10x the audio
        heavy = {"speeds": [0.5], "tempos": [0.5, 0.5, 0.5, 0.5], "steps": 1}
        r = await client.post(
            "/v1/fine_tuning/jobs", headers=auth("acme"), json=body | {"hyperparameters": heavy}
        )
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert error["code"] == "job_too_large" and "MiB" in error["message"], error
        listed = await client.get("/v1/fine_tuning/jobs", headers=auth("acme"))
        assert listed.json()["data"] == []  # nothing queued, nothing ran

        r = await client.post(
            "/v1/fine_tuning/jobs",
            headers=auth("acme"),
            json=body | {"hyperparameters": {"steps": 1}},
        )
        assert r.status_code == 200, r.text
        await client.post(f"/v1/fine_tuning/jobs/{r.json()['id']}/cancel", headers=auth("acme"))


async def test_a_cancel_during_the_feature_phase_ends_the_job_within_a_second_or_two(tmp_path):
    settings = job_settings(tmp_path, max_feature_bytes=4 * 1024**3)
    async with running_client(settings) as client:
        # 40 min of audio at 4 slow speeds: ~7x that in features, many seconds of work
        r = await client.post("/v1/files", headers=auth("acme"), **upload(long_silence_zip(40, 60)))
        assert r.status_code == 200, r.text
        augment = {"speeds": [0.5, 0.55, 0.6, 0.65]}
        r = await client.post(
            "/v1/fine_tuning/jobs",
            headers=auth("acme"),
            json={
                "model": "acme-cancel",
                "training_file": r.json()["id"],
                "hyperparameters": {"steps": 1} | augment,
            },
        )
        assert r.status_code == 200, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:  # the split is logged just before the model loads and features start
            events = await client.get(f"/v1/fine_tuning/jobs/{job_id}/events", headers=auth("acme"))
            if any("training items" in e["message"] for e in events.json()["data"]):
                break
            assert time.monotonic() < deadline, events.json()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # well inside the feature phase
        assert (await job_status(client, job_id))["progress"].get("step") is None
        asked = time.monotonic()
        r = await client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth("acme"))
        assert r.status_code == 200
        while (job := await job_status(client, job_id))["status"] in ("queued", "running"):
            assert time.monotonic() - asked < 2.0, "cancel not honoured within 2 s"
            await asyncio.sleep(0.05)
        print(f"cancelled {time.monotonic() - asked:.2f} s after the request")
        assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled", job
        assert job["progress"].get("step") is None  # it never reached a training step
