"""HRA_JOBS__QUEUE=rq: the serving app enqueues on the store's Redis, a real `rq worker`
process (as on a training machine) runs the job, and the new head reaches the server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.config import REPO_ROOT, JobSettings
from server.jobs.queue import queue_name
from tests.helpers import running_client
from tests.security.helpers import auth, keyed_settings
from tests.server.jobs.archives import fsdd_zip, upload
from tests.server.jobs.test_fine_tuning_e2e import wait_for

pytestmark = pytest.mark.slow


async def test_an_rq_worker_process_trains_the_job_and_the_server_serves_its_head(
    tmp_path, fsdd_root, redis_server
):
    settings = keyed_settings(
        tmp_path,
        "redis",
        redis_server,
        state_dir=tmp_path / "state",
        jobs=JobSettings(queue="rq"),
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        HRA_STORE="redis",
        HRA_REDIS_URL=redis_server.url,
        HRA_REDIS_PREFIX=settings.redis_prefix,
        HRA_STATE_DIR=str(settings.state_dir),
        HRA_MODEL_DIR=str(settings.model_dir),
    )
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    argv = [rq, "worker", "--url", redis_server.url, "--burst", queue_name(settings)]
    worker = None
    try:
        async with running_client(settings) as client:
            archive = fsdd_zip(fsdd_root, "theo", range(0, 2))
            file_id = (
                await client.post("/v1/files", headers=auth("acme"), **upload(archive))
            ).json()["id"]
            body = {
                "model": "acme-rq",
                "training_file": file_id,
                "hyperparameters": {"steps": 10},
                "promote": "always",
            }
            made = await client.post("/v1/fine_tuning/jobs", headers=auth("acme"), json=body)
            assert made.status_code == 200, made.text
            # a training machine's worker; --burst: it drains the queue (this job) and exits
            worker = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            _, errors = worker.communicate(timeout=240)
            assert worker.returncode == 0, errors.decode()[-2000:]
            job = await wait_for(
                client, made.json()["id"], "acme", ("succeeded", "failed"), timeout_s=10
            )
            assert job["status"] == "succeeded", job
            assert job["result"]["version"] == 1 and job["result"]["promoted"]
            said = await client.post(
                "/v1/transcribe?task_id=acme-rq",
                headers=auth("acme"),
                content=(fsdd_root / "4_theo_33.wav").read_bytes(),
            )
            assert said.status_code == 200 and said.json()["head_version"] == 1, said.text
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
