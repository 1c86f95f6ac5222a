"""Review findings on the fine-tuning surface: limits hold under concurrent requests."""

from __future__ import annotations

import asyncio

from tests.conftest import running_client
from tests.security.conftest import auth
from tests.security.test_fine_tuning_tenancy import job_settings
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
