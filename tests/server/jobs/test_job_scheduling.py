"""Jobs share the local worker fairly across tenants, and train at an absolute low priority.

One tenant's backlog does not hold another tenant's job behind all of it (the next job
comes from the least recently served tenant); a training worker runs at niceness
`HRA_JOBS__NICE` (19) whatever the server's own niceness.
"""

from __future__ import annotations

import asyncio
import time

from server.config import JobSettings
from tests.conftest import running_client
from tests.security.conftest import auth, keyed_settings
from tests.server.jobs.archives import fsdd_zip, upload


def job_settings(tmp_path, **jobs):
    return keyed_settings(tmp_path, "disk", state_dir=tmp_path / "state", jobs=JobSettings(**jobs))


async def start_job(client, who: str, task: str, file_id: str) -> str:
    body = {"model": task, "training_file": file_id, "hyperparameters": {"steps": 1}}
    r = await client.post("/v1/fine_tuning/jobs", headers=auth(who), json=body)
    assert r.status_code == 200, r.text
    return r.json()["id"]


async def status(client, who: str, job_id: str) -> str:
    return (await client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(who))).json()["status"]


async def test_another_tenants_single_job_runs_after_the_running_one_not_after_a_backlog(
    tmp_path, fsdd_root
):
    settings = job_settings(tmp_path, max_concurrent_jobs_per_tenant=3, local_workers=1)
    async with running_client(settings) as client:
        files = {}
        for who in ("acme", "globex"):
            archive = fsdd_zip(fsdd_root, "theo", range(0, 1))
            r = await client.post("/v1/files", headers=auth(who), **upload(archive))
            files[who] = r.json()["id"]
        acme = [await start_job(client, "acme", f"acme-{i}", files["acme"]) for i in range(3)]
        globex = await start_job(client, "globex", "globex-0", files["globex"])

        deadline = time.monotonic() + 120
        while await status(client, "globex", globex) == "queued":
            assert time.monotonic() < deadline, "globex's job never started"
            await asyncio.sleep(0.05)
        started = [await status(client, "acme", job_id) != "queued" for job_id in acme]
        assert started == [True, False, False], started  # globex's job ran second, not fourth
        for job_id in acme[1:]:
            await client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth("acme"))
