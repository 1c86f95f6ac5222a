"""Jobs share the local worker fairly across tenants, and train at an absolute low priority.

One tenant's backlog does not hold another tenant's job behind all of it (the next job
comes from the least recently served tenant); a training worker runs at niceness
`HRA_JOBS__NICE` (19) whatever the server's own niceness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from server.config import REPO_ROOT, JobSettings
from tests.helpers import free_port, running_client
from tests.security.helpers import auth, keyed_settings
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


@pytest.mark.parametrize("nice", [None, 12])
def test_a_training_worker_runs_at_its_absolute_niceness_under_a_server_at_niceness_5(
    tmp_path, fsdd_root, nice
):
    """`hra serve` started with `nice -n 5`: its job runs at HRA_JOBS__NICE (default 19)
    itself, not 5 more than the server (12 would become 17), and joins the configured
    cgroup folder (plain files here) at cpu.weight 1."""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")
    (cgroup / "cpu.weight").write_text("100\n")
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        HRA_OPEN_ACCESS="true",
        HRA_HOST="127.0.0.1",
        HRA_PORT=str(port),
        HRA_STATE_DIR=str(tmp_path / "state"),
        HRA_JOBS__CGROUP=str(cgroup),
    )
    if nice is not None:
        env["HRA_JOBS__NICE"] = str(nice)
    argv = ["nice", "-n", "5", sys.executable, "-m", "server.cli", "serve"]
    server = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        break
                time.sleep(0.2)
            assert os.getpriority(os.PRIO_PROCESS, server.pid) == 5
            archive = fsdd_zip(fsdd_root, "theo", range(0, 1))
            file_id = client.post("/v1/files", **upload(archive)).json()["id"]
            body = {
                "model": "nice-job",
                "training_file": file_id,
                "hyperparameters": {"steps": 2000},
            }
            job_id = client.post("/v1/fine_tuning/jobs", json=body).json()["id"]
            pid = None
            while pid is None:
                assert time.monotonic() < deadline + 60, "the job never started"
                for event in client.get(f"/v1/fine_tuning/jobs/{job_id}/events").json()["data"]:
                    if match := re.match(r"worker (\d+) started training", event["message"]):
                        pid = int(match.group(1))
                time.sleep(0.1)
            niceness = os.getpriority(os.PRIO_PROCESS, pid)  # while it runs
            client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
            assert niceness == (nice or 19), niceness
            assert (cgroup / "cgroup.procs").read_text().split() == [str(pid)]
            assert (cgroup / "cpu.weight").read_text().strip() == "1"
    finally:
        server.terminate()
        server.wait(timeout=30)
