"""API keys: admin vs tenant, ownership, 404 for others' tasks, keys never logged."""

from __future__ import annotations

import json
import logging

import pytest

from server.auth import ApiKey, KeyRing, Unauthorized
from tests.helpers import fsdd_bytes, make_settings, running_client

ADMIN, ACME, GLOBEX = "admin-key-123", "acme-key-456", "globex-key-789"


@pytest.fixture
async def keyed(tmp_path):
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([{"key": GLOBEX, "tenant": "globex"}]))
    settings = make_settings(
        tmp_path,
        open_access=False,
        keys_file=keys_file,
        api_keys=[ApiKey(key=ADMIN, admin=True), ApiKey(key=ACME, tenant="acme")],
    )
    async with running_client(settings) as client:
        yield client


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_without_a_valid_key_are_refused_401(keyed, fsdd_test):
    clip = fsdd_bytes(fsdd_test[0])
    for headers in ({}, _auth("wrong"), {"X-API-Key": "wrong"}):
        r = await keyed.post("/v1/transcribe", content=clip, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    ok = await keyed.post("/v1/transcribe", content=clip, headers={"X-API-Key": ACME})
    assert ok.status_code == 200  # any tenant may use the bare backbone ("base")
    assert (await keyed.get("/healthz")).status_code == 200  # probes need no key


async def test_tenants_manage_only_their_own_tasks_and_see_others_as_missing(keyed, fsdd_test):
    clip = fsdd_bytes(fsdd_test[0])
    head = (await keyed.get("/v1/tasks/fsdd-george/head", headers=_auth(ADMIN))).content
    r = await keyed.put(
        "/v1/tasks/acme-support",
        files={"file": ("h", head)},
        data={"metadata": json.dumps({"owner": "globex"})},
        headers=_auth(ACME),
    )
    assert r.status_code == 200 and r.json()["owner"] == "acme"  # tenants cannot assign owners
    # A private admin-owned task (the shipped fsdd-* heads are public: issue 16).
    r = await keyed.put(
        "/v1/tasks/admin-private", files={"file": ("h", head)}, headers=_auth(ADMIN)
    )
    assert r.status_code == 200

    assert (
        await keyed.post("/v1/transcribe?task_id=acme-support", content=clip, headers=_auth(ACME))
    ).status_code == 200
    listing = (await keyed.get("/v1/tasks", headers=_auth(ACME))).json()
    assert listing["tasks"] == ["acme-support"] and listing["total"] == 1

    for method, path, kwargs in [
        ("post", "/v1/transcribe?task_id=acme-support", {"content": clip}),
        ("get", "/v1/tasks/acme-support", {}),
        ("get", "/v1/tasks/acme-support/head", {}),
        ("post", "/v1/tasks/acme-support/rollback", {"json": {"version": 1}}),
        ("delete", "/v1/tasks/acme-support", {}),
        ("post", "/v1/transcribe?task_id=admin-private", {"content": clip}),  # admin-owned
    ]:
        r = await getattr(keyed, method)(path, headers=_auth(GLOBEX), **kwargs)
        missing = await getattr(keyed, method)(
            path.replace("acme-support", "no-such-task").replace("admin-private", "no-such-task"),
            headers=_auth(GLOBEX),
            **kwargs,
        )
        assert r.status_code == 404 == missing.status_code, (method, path)
        assert r.json()["error"]["code"] == missing.json()["error"]["code"] == "unknown_task"
    assert (await keyed.get("/v1/tasks", headers=_auth(GLOBEX))).json()["tasks"] == []
    taken = await keyed.put(
        "/v1/tasks/acme-support", files={"file": ("h", head)}, headers=_auth(GLOBEX)
    )
    assert taken.status_code == 404  # cannot overwrite another tenant's task

    admin_view = (await keyed.get("/v1/tasks/acme-support", headers=_auth(ADMIN))).json()
    assert admin_view["owner"] == "acme"
    assert (await keyed.delete("/v1/tasks/acme-support", headers=_auth(ACME))).status_code == 204


async def test_keys_never_reach_the_logs(keyed, fsdd_test, caplog):
    caplog.set_level(logging.DEBUG)
    await keyed.post("/v1/transcribe", content=fsdd_bytes(fsdd_test[0]), headers=_auth(ACME))
    await keyed.post("/v1/transcribe", content=b"x", headers=_auth("not-a-key-secret"))
    text = caplog.text
    assert ACME not in text and "not-a-key-secret" not in text


def test_keyring_refuses_tenantless_user_keys_and_unknown_keys():
    with pytest.raises(ValueError):
        KeyRing([ApiKey(key="k")])
    ring = KeyRing([ApiKey(key="a", tenant="t"), ApiKey(key="b", admin=True)])
    assert ring.authenticate("a").tenant == "t" and ring.authenticate("b").admin
    with pytest.raises(Unauthorized):
        ring.authenticate("c")


async def test_server_refuses_to_start_without_keys_unless_open_access_is_set(tmp_path):
    with pytest.raises(ValueError, match="no API keys"):
        async with running_client(make_settings(tmp_path, open_access=False)):
            pass


async def test_the_key_is_read_from_a_bearer_token_first_then_x_api_key(keyed):
    for headers in (
        {"Authorization": f"bearer {ACME}"},  # the scheme is case-insensitive
        {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": ACME},  # not bearer: X-API-Key
        {"Authorization": f"Bearer {ACME}", "X-API-Key": "wrong"},  # bearer wins
    ):
        r = await keyed.get("/v1/tasks", headers=headers)
        assert r.status_code == 200, headers
    r = await keyed.get("/v1/tasks", headers={"Authorization": "Bearer wrong", "X-API-Key": ACME})
    assert r.status_code == 401


async def test_without_a_key_unknown_paths_answer_401_not_404(keyed):
    """Route names are not probed anonymously; with a key they answer a typed 404."""
    assert (await keyed.get("/v1/nothing-here")).status_code == 401
    r = await keyed.get("/v1/nothing-here", headers=_auth(ACME))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
