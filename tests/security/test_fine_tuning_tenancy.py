"""Fine-tuning is each tenant's alone, bounded, and never leaves half-written state.

Another tenant gets 404 on a dataset or job (inspect, events, stream, cancel, delete,
train from it); archives are bounded (size, zip bombs, member names never used as
paths); one bad item refuses the upload with a per-item error; concurrent jobs and
training time are limited; cancel and time limit write no version; a restart leaves
no job "running".
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import tracemalloc
import zipfile

import httpx
import numpy as np
import pytest
import soundfile as sf

from server.config import JobSettings
from server.jobs.records import Hyperparameters, JobRecord, JobStore
from tests.helpers import live_server, running_client
from tests.security.helpers import auth, keyed_settings
from tests.server.jobs.archives import fsdd_zip, upload


def job_settings(tmp_path, **jobs):
    return keyed_settings(tmp_path, "disk", state_dir=tmp_path / "state", jobs=JobSettings(**jobs))


@pytest.fixture
async def jobs_client(tmp_path):
    async with running_client(job_settings(tmp_path, max_dataset_bytes=2_000_000)) as c:
        yield c


async def make_dataset(client, fsdd_root, who="acme", takes=range(0, 1)) -> str:
    r = await client.post(
        "/v1/files", headers=auth(who), **upload(fsdd_zip(fsdd_root, "theo", takes))
    )
    assert r.status_code == 200, r.text
    return r.json()["id"]


async def wait_for(client, job_id, statuses, who="acme", timeout_s=120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(who))).json()
        if job["status"] in statuses or (statuses == "stepping" and job["progress"]):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {statuses}")


async def test_another_tenant_sees_uses_and_cancels_none_of_a_tenants_datasets_and_jobs(
    jobs_client, fsdd_root
):
    client = jobs_client
    file_id = await make_dataset(client, fsdd_root)
    job = await client.post(
        "/v1/fine_tuning/jobs",
        headers=auth("acme"),
        json={"model": "acme-x", "training_file": file_id, "hyperparameters": {"steps": 2000}},
    )
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    for method, path in [
        ("GET", f"/v1/files/{file_id}"),
        ("DELETE", f"/v1/files/{file_id}"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}/events"),
        ("GET", f"/v1/fine_tuning/jobs/{job_id}/events?stream=true"),
        ("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel"),
    ]:
        r = await client.request(method, path, headers=auth("globex"))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] in ("unknown_file", "unknown_job")
    # absent ids answer exactly alike
    r = await client.get("/v1/files/file-" + "0" * 24, headers=auth("globex"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_file"
    # training from another tenant's dataset: 404, no job made
    stolen = await client.post(
        "/v1/fine_tuning/jobs",
        headers=auth("globex"),
        json={"model": "globex-x", "training_file": file_id},
    )
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "unknown_file"
    assert (await client.get("/v1/files", headers=auth("globex"))).json()["data"] == []
    assert (await client.get("/v1/fine_tuning/jobs", headers=auth("globex"))).json()["data"] == []
    # still acme's, untouched
    assert (await client.get(f"/v1/files/{file_id}", headers=auth("acme"))).status_code == 200
    mine = (await client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth("acme"))).json()
    assert mine["status"] in ("queued", "running") and mine["error"] is None
    await client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth("acme"))


async def test_a_tenant_cannot_train_a_task_another_tenant_owns_or_a_public_one(
    jobs_client, fsdd_root, head_files
):
    client = jobs_client
    put = await client.put(
        "/v1/tasks/acme-own",
        headers=auth("acme"),
        files={"file": ("h.safetensors", head_files["acme"])},
    )
    assert put.status_code == 200, put.text
    file_id = await make_dataset(client, fsdd_root, who="globex")
    for task in ("acme-own", "fsdd-theo"):  # acme's; a shipped head (admin's)
        r = await client.post(
            "/v1/fine_tuning/jobs",
            headers=auth("globex"),
            json={"model": task, "training_file": file_id},
        )
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "unknown_task"


def _zip(members: dict[str, bytes], manifest: list[dict]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("manifest.jsonl", "\n".join(json.dumps(m) for m in manifest))
    return buffer.getvalue()


async def test_an_archive_over_the_size_limit_is_refused_with_413(jobs_client):
    big = _zip({"a.bin": bytes(range(256)) * 10_000}, [])  # incompressible-ish, > 2 MB?
    big = big + b"\0" * (2_000_001 - len(big)) if len(big) <= 2_000_000 else big
    r = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(big))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


async def test_a_zip_bomb_stops_at_the_inflate_limit_quickly(jobs_client):
    bomb = _zip({"bomb.wav": b"\0" * 30_000_000}, [{"audio": "bomb.wav", "text": "one"}])
    assert len(bomb) < 100_000  # 30 MB of zeros in ~30 KB: inflates past the 8 MB budget
    began = time.monotonic()
    r = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(bomb))
    assert r.status_code == 413, r.text
    assert time.monotonic() - began < 10
    assert (await jobs_client.get("/v1/files", headers=auth("acme"))).json()["data"] == []


async def test_member_names_are_never_paths_and_traversal_writes_nothing_outside(
    jobs_client, fsdd_root, tmp_path
):
    wav = (fsdd_root / "3_theo_0.wav").read_bytes()
    archive = _zip(
        {"../../evil.wav": wav, "/abs/evil2.wav": wav},
        [
            {"audio": "../../evil.wav", "text": "three"},
            {"audio": "/abs/evil2.wav", "text": "three"},
        ],
    )
    r = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(archive))
    assert r.status_code == 200, r.text
    assert r.json()["items"] == 2
    assert not list(tmp_path.parent.rglob("evil*.wav"))
    stored = sorted(p.name for p in (tmp_path / "state").rglob("*.wav"))
    assert stored == ["00000.wav", "00001.wav"]


async def test_bad_items_refuse_the_upload_with_a_per_item_error_and_store_nothing(
    jobs_client, fsdd_root, tmp_path
):
    wav = (fsdd_root / "3_theo_0.wav").read_bytes()
    archive = _zip(
        {"good.wav": wav, "bad.wav": b"RIFF not really a wav", "empty.wav": b""},
        [
            {"audio": "good.wav", "text": "three"},
            {"audio": "bad.wav", "text": "one"},
            {"audio": "missing.wav", "text": "two"},
            {"audio": "good.wav", "text": "!!!"},
            {"audio": "empty.wav", "text": "four"},
        ],
    )
    r = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(archive))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_dataset"
    message = error["message"]
    assert message.startswith("4 of 5 items refused")
    for needle in (
        "line 2: invalid_audio",
        "line 3: invalid_dataset",
        "line 4:",
        "line 5: empty_audio",
    ):
        assert needle in message, message
    assert "line 1" not in message
    assert (await jobs_client.get("/v1/files", headers=auth("acme"))).json()["data"] == []
    assert not list((tmp_path / "state").rglob("*.wav"))


async def test_items_claiming_hours_are_refused_from_their_headers_before_decoding(jobs_client):
    """60 KB of FLAC can hold 40 minutes of silence: two of them pass the dataset's hour.
    The second is refused from its header, so the upload never holds decoded hours."""
    silence = io.BytesIO()
    sf.write(silence, np.zeros(8000 * 2400, np.int16), 8000, format="FLAC")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name in ("a.flac", "b.flac"):
            z.writestr(name, silence.getvalue())
        rows = [{"audio": n, "text": "zero"} for n in ("a.flac", "b.flac")]
        z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows))
    tracemalloc.start()
    try:
        r = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(buffer.getvalue()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    assert "limit" in r.json()["error"]["message"]
    # one item decoded (40 min at 16 kHz float32: 154 MB), never both (308 MB)
    assert peak < 250 * 1024 * 1024, peak


async def test_a_vocabulary_from_data_past_its_bound_is_refused_at_job_creation(
    jobs_client, fsdd_root
):
    words = ["".join(chr(97 + (i // 26**k) % 26) for k in range(3)) + "x" for i in range(1200)]
    clips = sorted(fsdd_root.glob("*_theo_0.wav"))[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        rows = []
        for i, clip in enumerate(clips):  # 6 x 200 distinct words: 1,200 in all
            z.writestr(clip.name, clip.read_bytes())
            rows.append({"audio": clip.name, "text": " ".join(words[i * 200 : (i + 1) * 200])})
        z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows))
    made = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(buffer.getvalue()))
    assert made.status_code == 200, made.text
    body = {"model": "acme-words", "training_file": made.json()["id"]}
    body["hyperparameters"] = {"steps": 5, "vocabulary_from_data": True}
    r = await jobs_client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_vocabulary", r.text
    listed = await jobs_client.get("/v1/fine_tuning/jobs", headers=auth("acme"))
    assert listed.json()["data"] == []  # nothing queued


async def test_transcripts_longer_than_their_audio_can_align_are_refused_at_job_creation(
    jobs_client, fsdd_root
):
    clips = sorted(fsdd_root.glob("*_theo_0.wav"))[:3]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        rows = [{"audio": c.name, "text": "zero"} for c in clips[:2]]
        rows.append({"audio": clips[2].name, "text": "seven " * 40})  # 240 letters, ~0.5 s
        for c in clips:
            z.writestr(c.name, c.read_bytes())
        z.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows))
    made = await jobs_client.post("/v1/files", headers=auth("acme"), **upload(buffer.getvalue()))
    assert made.status_code == 200, made.text
    body = {"model": "acme-long", "training_file": made.json()["id"]}
    body["hyperparameters"] = {"steps": 5}
    r = await jobs_client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "transcript_too_long", r.text
    assert "line 3:" in r.json()["error"]["message"]  # the manifest's line, alone
    assert "line 1:" not in r.json()["error"]["message"]


async def test_deleting_a_dataset_deletes_its_audio(jobs_client, fsdd_root, tmp_path):
    file_id = await make_dataset(jobs_client, fsdd_root)
    assert len(list((tmp_path / "state").rglob("*.wav"))) == 10
    r = await jobs_client.delete(f"/v1/files/{file_id}", headers=auth("acme"))
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert not list((tmp_path / "state").rglob("*.wav"))
    r = await jobs_client.get(f"/v1/files/{file_id}", headers=auth("acme"))
    assert r.status_code == 404


@pytest.mark.slow
async def test_concurrent_jobs_are_limited_and_a_cancelled_job_writes_no_version(
    jobs_client, fsdd_root
):
    client = jobs_client
    file_id = await make_dataset(client, fsdd_root)
    body = {"model": "acme-cancel", "training_file": file_id, "hyperparameters": {"steps": 2000}}
    first = (await client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)).json()
    second = await client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_jobs"
    await wait_for(client, first["id"], "stepping")
    r = await client.post(f"/v1/fine_tuning/jobs/{first['id']}/cancel", headers=auth("acme"))
    assert r.status_code == 200
    job = await wait_for(client, first["id"], ("cancelled", "failed", "succeeded"))
    assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled"
    assert job["result"] == {}
    r = await client.get("/v1/tasks/acme-cancel", headers=auth("admin"))
    assert r.status_code == 404  # no version, not even a task
    # the slot is free again
    again = await client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)
    assert again.status_code == 200
    await client.post(f"/v1/fine_tuning/jobs/{again.json()['id']}/cancel", headers=auth("acme"))


async def test_an_admins_job_on_a_tenants_task_keeps_the_task_the_tenants(jobs_client, fsdd_root):
    client = jobs_client
    head = (await client.get("/v1/tasks/fsdd-theo/head", headers=auth("admin"))).content
    r = await client.put(
        "/v1/tasks/acme-owned", files={"file": ("h.safetensors", head)}, headers=auth("acme")
    )
    assert r.status_code == 200 and r.json()["owner"] == "acme", r.text
    file_id = await make_dataset(client, fsdd_root, who="admin")
    body = {"model": "acme-owned", "training_file": file_id, "hyperparameters": {"steps": 5}}
    body["promote"] = "always"
    made = await client.post("/v1/fine_tuning/jobs", headers=auth("admin"), json=body)
    assert made.status_code == 200, made.text
    job = await wait_for(client, made.json()["id"], ("succeeded", "failed"), who="admin")
    assert job["status"] == "succeeded", job
    r = await client.get("/v1/tasks/acme-owned", headers=auth("acme"))
    assert r.status_code == 200, r.text  # the tenant keeps its own task
    assert r.json()["owner"] == "acme" and r.json()["version"] == 2


@pytest.mark.slow
async def test_the_training_time_limit_fails_the_job_cleanly_with_no_version(tmp_path, fsdd_root):
    async with running_client(job_settings(tmp_path, max_train_seconds=3)) as client:
        file_id = await make_dataset(client, fsdd_root)
        body = {"model": "acme-slow", "training_file": file_id, "hyperparameters": {"steps": 2000}}
        made = (await client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)).json()
        job = await wait_for(client, made["id"], ("cancelled", "failed", "succeeded"))
        assert job["status"] == "failed" and job["error"]["code"] == "time_limit", job
        r = await client.get("/v1/tasks/acme-slow", headers=auth("admin"))
        assert r.status_code == 404


async def test_a_restart_fails_jobs_left_running_and_queues_waiting_ones_again(tmp_path, fsdd_root):
    """A server killed mid-job leaves a "running" record behind: the next start fails it
    (`worker_lost`) and runs the queued one (here: cancelled right away to keep it short)."""
    settings = job_settings(tmp_path)
    async with running_client(settings) as client:
        file_id = await make_dataset(client, fsdd_root)
    store = JobStore(settings.jobs_root)
    left = []
    for status in ("running", "queued"):
        record = JobRecord(
            id=JobStore.new_id(),
            owner="acme",
            task_id=f"acme-{status}",
            training_file=file_id,
            validation_file=None,
            hyperparameters=Hyperparameters(steps=5),
            promote="always",
            created_at=time.time(),
        )
        store.create(record)
        if status == "running":
            store.transition(record.id, "running")
        left.append(record.id)
    async with running_client(settings) as client:
        crashed = (await client.get(f"/v1/fine_tuning/jobs/{left[0]}", headers=auth("acme"))).json()
        assert crashed["status"] == "failed" and crashed["error"]["code"] == "worker_lost"
        resumed = await wait_for(client, left[1], ("succeeded", "failed"), timeout_s=120)
        assert resumed["status"] == "succeeded", resumed
        assert resumed["result"]["version"] == 1


async def test_job_requests_out_of_bounds_are_refused_before_anything_runs(jobs_client, fsdd_root):
    file_id = await make_dataset(jobs_client, fsdd_root)
    bad = [
        ({"steps": 10**9}, "steps"),
        ({"steps": "10"}, "steps"),
        ({"n_epochs": 3}, "unknown hyperparameters"),
        ({"speeds": [0.1]}, "speeds"),
        ({"speeds": [0.5003]}, "speeds"),
        ({"speeds": [1.0] * 50}, "speeds"),
        ({"head_type": "residual"}, "head_type"),
        ({"rank": 10_000, "head_type": "ffn"}, "rank"),
        ({"learning_rate": -1}, "learning_rate"),
    ]
    for hyperparameters, word in bad:
        r = await jobs_client.post(
            "/v1/fine_tuning/jobs",
            headers=auth("acme"),
            json={"model": "acme-x", "training_file": file_id, "hyperparameters": hyperparameters},
        )
        assert r.status_code == 400, (hyperparameters, r.text)
        assert word in r.json()["error"]["message"]
    for body in (
        {"model": "base", "training_file": file_id},
        {"model": "acme-x", "training_file": file_id, "promote": "sometimes"},
        {"model": "acme-new", "training_file": file_id, "promote": "never"},
    ):
        r = await jobs_client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)
        assert r.status_code == 400, (body, r.text)
    r = await jobs_client.post(
        "/v1/fine_tuning/jobs",
        headers=auth("acme"),
        json={"model": "../etc", "training_file": file_id},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_task_id"
    assert (await jobs_client.get("/v1/fine_tuning/jobs", headers=auth("acme"))).json()[
        "data"
    ] == []


async def test_a_tenants_open_job_event_streams_are_bounded_and_closing_one_frees_it(
    tmp_path, fsdd_root
):
    settings = job_settings(tmp_path, max_event_streams_per_tenant=2)
    with live_server(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            file_id = await make_dataset(client, fsdd_root)
            job = await client.post(
                "/v1/fine_tuning/jobs",
                headers=auth("acme"),
                json={
                    "model": "acme-s",
                    "training_file": file_id,
                    "hyperparameters": {"steps": 2000},
                },
            )
            job_id = job.json()["id"]
            path = f"/v1/fine_tuning/jobs/{job_id}/events?stream=true"
            first = await client.send(
                client.build_request("GET", path, headers=auth("acme")), stream=True
            )
            second = await client.send(
                client.build_request("GET", path, headers=auth("acme")), stream=True
            )
            assert (first.status_code, second.status_code) == (200, 200)
            third = await client.get(path, headers=auth("acme"))
            assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_jobs"
            await first.aclose()  # the server sees the client go and frees the lease
            deadline = time.monotonic() + 10
            while True:
                again = await client.send(
                    client.build_request("GET", path, headers=auth("acme")), stream=True
                )
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                await again.aclose()
                await asyncio.sleep(0.2)
            assert again.status_code == 200
            await again.aclose()
            await second.aclose()
            await client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth("acme"))
