"""Fine-tuning limits hold under concurrent requests: dataset count and parses per tenant,
concurrent deletes, bounded job history, archives with huge central directories."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile

from tests.helpers import running_client
from tests.security.helpers import auth
from tests.security.test_fine_tuning_tenancy import job_settings, wait_for
from tests.server.jobs.archives import fsdd_zip, upload


async def test_concurrent_uploads_never_exceed_the_tenants_dataset_limit(tmp_path, fsdd_root):
    settings = job_settings(tmp_path, max_dataset_bytes=2_000_000, max_datasets_per_tenant=1)
    body = upload(fsdd_zip(fsdd_root, "theo", range(0, 3)))
    async with running_client(settings) as client:
        replies = await asyncio.gather(
            *(client.post("/v1/files", headers=auth("acme"), **body) for _ in range(6))
        )
        codes = sorted(r.status_code for r in replies)
        listed = (await client.get("/v1/files", headers=auth("acme"))).json()["data"]
    assert codes.count(200) == 1, codes
    assert len(listed) == 1


async def test_a_tenant_parses_one_dataset_upload_at_a_time(tmp_path, fsdd_root):
    """Each parse may hold an hour of decoded audio: concurrent uploads of one tenant would
    multiply that without bound; the extra ones get 429 too_many_jobs."""
    settings = job_settings(tmp_path, max_dataset_bytes=4_000_000)
    body = upload(fsdd_zip(fsdd_root, "theo", range(0, 20)))
    async with running_client(settings) as client:
        replies = await asyncio.gather(
            *(client.post("/v1/files", headers=auth("acme"), **body) for _ in range(4))
        )
        other = await client.post("/v1/files", headers=auth("globex"), **body)
    codes = [r.status_code for r in replies]
    assert codes.count(200) >= 1, codes
    refused = [r for r in replies if r.status_code == 429]
    assert refused and all(r.json()["error"]["code"] == "too_many_jobs" for r in refused), codes
    assert other.status_code == 200, other.text  # another tenant is not held up


async def test_concurrent_deletes_of_one_dataset_answer_200_then_404_never_500(tmp_path, fsdd_root):
    settings = job_settings(tmp_path, max_dataset_bytes=2_000_000)
    async with running_client(settings) as client:
        r = await client.post(
            "/v1/files", headers=auth("acme"), **upload(fsdd_zip(fsdd_root, "theo", range(0, 1)))
        )
        file_id = r.json()["id"]
        replies = await asyncio.gather(
            *(client.delete(f"/v1/files/{file_id}", headers=auth("acme")) for _ in range(8))
        )
    codes = sorted(r.status_code for r in replies)
    assert codes.count(200) == 1 and codes.count(404) == 7, codes


async def test_a_tenants_job_history_is_bounded_oldest_finished_records_go(tmp_path, fsdd_root):
    """create -> cancel -> create ... would otherwise grow records on disk (and every
    tenant's list/create scan) without bound."""
    settings = job_settings(tmp_path, max_dataset_bytes=2_000_000, max_job_records_per_tenant=2)
    async with running_client(settings) as client:
        r = await client.post(
            "/v1/files", headers=auth("acme"), **upload(fsdd_zip(fsdd_root, "theo", range(0, 2)))
        )
        file_id = r.json()["id"]
        ids = []
        for _ in range(4):
            job = await client.post(
                "/v1/fine_tuning/jobs",
                headers=auth("acme"),
                json={
                    "model": "acme-x",
                    "training_file": file_id,
                    "hyperparameters": {"steps": 2000},
                },
            )
            assert job.status_code == 200, job.text
            ids.append(job.json()["id"])
            await client.post(f"/v1/fine_tuning/jobs/{ids[-1]}/cancel", headers=auth("acme"))
            await wait_for(client, ids[-1], ("cancelled",))
        listed = (await client.get("/v1/fine_tuning/jobs", headers=auth("acme"))).json()["data"]
    # the newest stays; older finished ones went (one a local worker still held may stay)
    assert len(listed) == 2 and listed[0]["id"] == ids[-1], (ids, listed)
    assert len(list((tmp_path / "state" / "jobs" / "jobs").glob("ftjob-*"))) == 2


async def test_an_archive_of_many_empty_members_is_refused_before_its_directory_is_parsed(
    tmp_path,
):
    """zipfile builds an object per central-directory entry up front: 100k empty members
    (8 MB) would cost ~55 MB and seconds of CPU before the member count is checked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.jsonl", b"")
        for i in range(100_000):
            archive.writestr(f"{i:x}", b"")
    data = buffer.getvalue()
    settings = job_settings(tmp_path, max_dataset_bytes=10_000_000)
    async with running_client(settings) as client:
        began = time.monotonic()
        r = await client.post(
            "/v1/files",
            headers=auth("acme"),
            files={"file": ("d.zip", data, "application/zip")},
            data={"purpose": "fine-tune"},
        )
        elapsed = time.monotonic() - began
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_dataset", r.text
    assert "central directory" in r.json()["error"]["message"]
    assert elapsed < 5, elapsed
