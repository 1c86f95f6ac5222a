"""End to end over HTTP: a tenant's dataset -> a training job -> a promoted head.

The job runs in a real worker child process (the local queue), reads real FSDD audio,
trains a head with the shipped backbone and controller frozen, evaluates it against
`base` on held-out items and registers it; meanwhile another tenant transcribes.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from server.config import JobSettings
from tests.helpers import running_client
from tests.security.helpers import auth, keyed_settings
from tests.server.jobs.archives import fsdd_zip, upload

pytestmark = pytest.mark.slow
SPEAKER = "theo"


def job_settings(tmp_path, **jobs):
    return keyed_settings(tmp_path, "disk", state_dir=tmp_path / "state", jobs=JobSettings(**jobs))


async def wait_for(client, job_id: str, who: str, statuses, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(who))).json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


async def test_tenant_trains_a_head_that_beats_base_while_others_keep_transcribing(
    tmp_path, fsdd_root, fsdd_test
):
    settings = job_settings(tmp_path)
    async with running_client(settings) as client:
        archive = fsdd_zip(fsdd_root, SPEAKER, range(0, 4))  # 40 utterances
        made = await client.post("/v1/files", headers=auth("acme"), **upload(archive))
        assert made.status_code == 200, made.text
        dataset = made.json()
        assert dataset["items"] == 40 and dataset["object"] == "file"

        created = await client.post(
            "/v1/fine_tuning/jobs",
            headers=auth("acme"),
            json={
                "model": "acme-theo",
                "training_file": dataset["id"],
                "hyperparameters": {"steps": 40},
            },
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        assert created.json()["status"] == "queued"

        other = [u for u in fsdd_test if u.task == "fsdd-jackson"][:3]
        stop = asyncio.Event()

        async def other_tenant_traffic() -> list[int]:
            codes = []
            while not stop.is_set():
                for u in other:
                    r = await client.post(
                        "/v1/audio/transcriptions",
                        headers=auth("globex"),
                        files={"file": ("a.wav", open(u.audio, "rb").read(), "audio/wav")},
                        data={"model": "base"},
                    )
                    codes.append(r.status_code)
                await asyncio.sleep(0.2)
            return codes

        traffic = asyncio.create_task(other_tenant_traffic())
        async with client.stream(
            "GET", f"/v1/fine_tuning/jobs/{job_id}/events?stream=true", headers=auth("acme")
        ) as stream:
            events = [
                line.removeprefix("data: ")
                async for line in stream.aiter_lines()
                if line.startswith("data: ")
            ]
        stop.set()
        codes = await traffic
        assert events[-1] == "[DONE]"
        messages = [json.loads(e) for e in events[:-1]]
        steps = [m["data"] for m in messages if m["type"] == "metrics" and "step" in m["data"]]
        assert steps and steps[-1]["step"] == 40 and "eta_s" in steps[-1]

        job = await wait_for(client, job_id, "acme", ("succeeded", "failed", "cancelled"))
        assert job["status"] == "succeeded", job
        wer = job["result"]["wer"]
        assert wer["new"] < wer["base"], wer
        assert job["result"]["promoted"] and job["fine_tuned_model"] == "acme-theo"

        task = (await client.get("/v1/tasks/acme-theo", headers=auth("acme"))).json()
        assert task["owner"] == "acme" and task["version"] == job["result"]["version"]
        said = await client.post(
            "/v1/transcribe?task_id=acme-theo",
            headers=auth("acme"),
            content=open(f"{fsdd_root}/7_{SPEAKER}_35.wav", "rb").read(),
        )
        assert said.status_code == 200, said.text
        assert codes and set(codes) == {200}, codes  # the other tenant was never refused
