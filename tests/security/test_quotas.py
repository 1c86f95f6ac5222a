"""Per-tenant quotas (tasks, versions per task, stored bytes) through real HTTP, both stores."""

from __future__ import annotations

import pytest

from server.config import QuotaSettings
from tests.helpers import running_client
from tests.security.helpers import auth, keyed_settings


@pytest.fixture(params=["disk", "redis"])
def quota_app(request, tmp_path):
    """A factory: the keyed app over either store, with the given quotas."""
    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" else None

    def build(**quotas):
        settings = keyed_settings(tmp_path, request.param, redis_server)
        settings.quotas = QuotaSettings(**quotas)
        return running_client(settings)

    return build


async def _put(client, task, who, data, metadata=None):
    body = {"metadata": metadata} if metadata else {}
    return await client.put(
        f"/v1/tasks/{task}", files={"file": ("h", data)}, data=body, headers=auth(who)
    )


def _refused(r) -> bool:
    return r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"


async def test_a_tenant_cannot_own_more_tasks_than_its_quota(quota_app, head_files):
    head = head_files["acme"]
    async with quota_app(max_tasks_per_tenant=2) as client:
        for task in ("a", "b"):
            assert (await _put(client, task, "acme", head)).status_code == 200
        r = await _put(client, "c", "acme", head)
        assert _refused(r) and "limit 2" in r.json()["error"]["message"]
        assert (await client.get("/v1/tasks/c", headers=auth("admin"))).status_code == 404
        assert (await _put(client, "a", "acme", head)).status_code == 200  # new version: fine
        assert (await _put(client, "g", "globex", head)).status_code == 200  # its own quota
        r = await _put(client, "c", "admin", head, '{"owner": "acme"}')
        assert r.status_code == 200 and r.json()["owner"] == "acme"  # admins are not limited
        for task in ("a", "c"):
            assert (
                await client.delete(f"/v1/tasks/{task}", headers=auth("acme"))
            ).status_code == 204
        assert (await _put(client, "d", "acme", head)).status_code == 200


async def test_a_tenant_task_cannot_hold_more_versions_than_its_quota(quota_app, head_files):
    head = head_files["acme"]
    async with quota_app(max_versions_per_task=3) as client:
        for _ in range(3):
            assert (await _put(client, "x", "acme", head)).status_code == 200
        assert _refused(await _put(client, "x", "acme", head))
        info = (await client.get("/v1/tasks/x", headers=auth("acme"))).json()
        assert info["versions"] == [1, 2, 3]
        r = await client.post("/v1/tasks/x/rollback", json={"version": 1}, headers=auth("acme"))
        assert r.status_code == 200  # rollback adds no version
        assert (await _put(client, "x", "admin", head)).status_code == 200
        assert (await client.delete("/v1/tasks/x", headers=auth("acme"))).status_code == 204
        r = await _put(client, "x", "acme", head)
        assert r.status_code == 200 and r.json()["version"] == 5  # a fresh start, no reuse


async def test_a_tenant_cannot_store_more_bytes_than_its_quota_and_delete_frees_them(
    quota_app, head_files
):
    head = head_files["acme"]
    async with quota_app(max_bytes_per_tenant=int(2.5 * len(head))) as client:
        for task in ("p", "q"):
            assert (await _put(client, task, "acme", head)).status_code == 200
        r = await _put(client, "r", "acme", head)
        assert _refused(r) and "bytes" in r.json()["error"]["message"]
        assert (await client.get("/v1/tasks/r", headers=auth("acme"))).status_code == 404
        assert (await _put(client, "r", "globex", head)).status_code == 200
        assert (await client.delete("/v1/tasks/p", headers=auth("acme"))).status_code == 204
        assert (await _put(client, "s", "acme", head)).status_code == 200
        assert _refused(await _put(client, "q", "acme", head))  # a new version counts too
