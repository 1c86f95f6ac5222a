"""Task visibility (issue 16 item 5), through real HTTP on both stores.

Shipped heads are public: every tenant transcribes with them and sees them, none may
download, replace, roll back or delete them. A tenant's task is private, and only an
admin changes that. Hostile visibility values get 4xx and change nothing.
"""

from __future__ import annotations

import pytest

from adapters_store.seeding import seed_store
from tests.helpers import DEFAULT_MODEL_DIR, fsdd_bytes
from tests.security.helpers import auth

SHIPPED = sorted(p.name for p in (DEFAULT_MODEL_DIR / "heads").iterdir() if p.is_dir())


@pytest.fixture
async def seeded(tenants):
    """The keyed app with the shipped heads seeded into its store as `hra seed-store` does."""
    client, settings = tenants
    await seed_store(client.app.state.runtime.store, DEFAULT_MODEL_DIR / "heads")
    return client


async def _put(client, task, who, data, **form):
    return await client.put(
        f"/v1/tasks/{task}", files={"file": ("h", data)}, data=form, headers=auth(who)
    )


async def _transcribe(client, task, who, clip):
    return await client.post(f"/v1/transcribe?task_id={task}", content=clip, headers=auth(who))


async def _visibility(client, task, who, value):
    return await client.patch(f"/v1/tasks/{task}", json={"visibility": value}, headers=auth(who))


async def test_shipped_tasks_are_public_and_every_tenant_transcribes_with_them(seeded, fsdd_test):
    clip = fsdd_bytes(next(u for u in fsdd_test if u.task == "fsdd-george"))
    for who in ("acme", "globex"):
        r = await _transcribe(seeded, "fsdd-george", who, clip)
        assert r.status_code == 200, (who, r.text)
        assert r.json()["text"]
        info = await seeded.get("/v1/tasks/synth-noisy", headers=auth(who))
        assert info.status_code == 200 and info.json()["visibility"] == "public"


async def test_a_tenant_task_is_private_and_answers_404_to_other_tenants(
    seeded, head_files, fsdd_test
):
    clip = fsdd_bytes(fsdd_test[0])
    made = await _put(seeded, "acme-secret", "acme", head_files["acme"])
    assert made.status_code == 200, made.text
    info = await seeded.get("/v1/tasks/acme-secret", headers=auth("acme"))
    assert info.json()["visibility"] == "private"
    assert (await _transcribe(seeded, "acme-secret", "acme", clip)).status_code == 200
    for method, path in [
        ("get", "/v1/tasks/acme-secret"),
        ("get", "/v1/tasks/acme-secret/head"),
        ("get", "/v1/models/acme-secret"),
        ("delete", "/v1/tasks/acme-secret"),
    ]:
        r = await getattr(seeded, method)(path, headers=auth("globex"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_task", path
    assert (await _transcribe(seeded, "acme-secret", "globex", clip)).status_code == 404
    # Not even the visibility route tells globex the task exists.
    r = await _visibility(seeded, "acme-secret", "globex", "public")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_task"


async def test_a_tenant_cannot_make_its_own_task_public(seeded, head_files, fsdd_test):
    refused = await _put(seeded, "acme-own", "acme", head_files["acme"], visibility="public")
    assert refused.status_code == 400 and "only admins" in refused.json()["error"]["message"]
    assert (await seeded.get("/v1/tasks/acme-own", headers=auth("acme"))).status_code == 404
    assert (await _put(seeded, "acme-own", "acme", head_files["acme"])).status_code == 200
    r = await _visibility(seeded, "acme-own", "acme", "public")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert "only admins" in r.json()["error"]["message"]
    clip = fsdd_bytes(fsdd_test[0])
    assert (await _transcribe(seeded, "acme-own", "globex", clip)).status_code == 404
    info = await seeded.get("/v1/tasks/acme-own", headers=auth("acme"))
    assert info.json()["visibility"] == "private"


async def test_a_tenant_cannot_download_replace_roll_back_or_delete_a_public_task(
    seeded, head_files
):
    before = (await seeded.get("/v1/tasks/fsdd-george/head", headers=auth("admin"))).content
    versions = (await seeded.get("/v1/tasks/fsdd-george", headers=auth("admin"))).json()
    for who in ("acme", "globex"):
        r = await seeded.get("/v1/tasks/fsdd-george/head", headers=auth(who))
        assert r.status_code == 404, who
        assert (await _put(seeded, "fsdd-george", who, head_files[who])).status_code == 404
        r = await seeded.post(
            "/v1/tasks/fsdd-george/rollback", json={"version": 1}, headers=auth(who)
        )
        assert r.status_code == 404, who
        assert (await seeded.delete("/v1/tasks/fsdd-george", headers=auth(who))).status_code == 404
    after = await seeded.get("/v1/tasks/fsdd-george", headers=auth("admin"))
    assert after.json()["versions"] == versions["versions"]
    assert after.json()["visibility"] == "public"
    assert (await seeded.get("/v1/tasks/fsdd-george/head", headers=auth("admin"))).content == before


async def test_visibility_survives_replace_and_rollback_until_an_admin_changes_it(
    seeded, head_files, fsdd_test
):
    clip = fsdd_bytes(fsdd_test[0])
    v1 = (await _put(seeded, "acme-shared", "acme", head_files["acme"])).json()["version"]
    made_public = await _visibility(seeded, "acme-shared", "admin", "public")
    assert made_public.status_code == 200 and made_public.json()["visibility"] == "public"
    assert (await _transcribe(seeded, "acme-shared", "globex", clip)).status_code == 200

    # The admin replaces it without naming a visibility, the owner replaces it, then a rollback.
    assert (await _put(seeded, "acme-shared", "admin", head_files["globex"])).status_code == 200
    assert (await _put(seeded, "acme-shared", "acme", head_files["acme"])).status_code == 200
    rolled = await seeded.post(
        "/v1/tasks/acme-shared/rollback", json={"version": v1}, headers=auth("admin")
    )
    assert rolled.status_code == 200 and rolled.json()["visibility"] == "public"
    assert rolled.json()["owner"] == "acme"
    assert (await _transcribe(seeded, "acme-shared", "globex", clip)).status_code == 200
    # Still acme's own: it downloads it; globex uses it but may not download it.
    assert (await seeded.get("/v1/tasks/acme-shared/head", headers=auth("acme"))).status_code == 200
    assert (
        await seeded.get("/v1/tasks/acme-shared/head", headers=auth("globex"))
    ).status_code == 404

    made_private = await _visibility(seeded, "acme-shared", "admin", "private")
    assert made_private.json()["visibility"] == "private"
    assert (await _transcribe(seeded, "acme-shared", "globex", clip)).status_code == 404
    assert (await _transcribe(seeded, "acme-shared", "acme", clip)).status_code == 200


async def test_an_admin_sets_visibility_with_the_upload_itself(seeded, head_files, fsdd_test):
    r = await _put(seeded, "admin-made", "admin", head_files["acme"], visibility="public")
    assert r.status_code == 200, r.text
    clip = fsdd_bytes(fsdd_test[0])
    assert (await _transcribe(seeded, "admin-made", "globex", clip)).status_code == 200


HOSTILE = [
    "PUBLIC ",
    "Public",
    " public",
    "public\x00",
    "",
    "x" * (10 * 1024 * 1024),
    1,
    True,
    None,
    ["public"],
    {"visibility": "public"},
    1.5,
]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:20])
async def test_hostile_visibility_values_get_4xx_and_change_nothing(seeded, head_files, value):
    assert (await _put(seeded, "target", "acme", head_files["acme"])).status_code == 200
    for who in ("admin", "acme"):
        r = await _visibility(seeded, "target", who, value)
        assert 400 <= r.status_code < 500, (who, r.status_code, r.text[:200])
        assert "error" in r.json()
    if isinstance(value, str) and value and len(value) < 100:  # an empty form field is absent
        r = await _put(seeded, "target", "admin", head_files["acme"], visibility=value)
        assert 400 <= r.status_code < 500, r.text[:200]
    info = await seeded.get("/v1/tasks/target", headers=auth("admin"))
    assert info.json()["visibility"] == "private" and info.json()["versions"] == [1]


async def test_visibility_bodies_that_are_not_objects_get_4xx(seeded):
    for body in (b"[]", b'"public"', b"{", b"null", b'{"visibility": "public", "x": ' * 1000):
        r = await seeded.patch(
            "/v1/tasks/fsdd-george",
            content=body,
            headers={**auth("admin"), "content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500, (body[:20], r.status_code)
    info = await seeded.get("/v1/tasks/fsdd-george", headers=auth("admin"))
    assert info.json()["visibility"] == "public"


async def test_seeding_makes_shipped_heads_public_in_a_store_that_had_them_private(tenants):
    client, _ = tenants
    store = client.app.state.runtime.store
    await seed_store(store, DEFAULT_MODEL_DIR / "heads")
    await store.set_visibility("fsdd-theo", "private")
    report = await seed_store(store, DEFAULT_MODEL_DIR / "heads")
    assert "fsdd-theo" in report.skipped  # same head: no new version ...
    assert (await store.access("fsdd-theo")).visibility == "public"  # ... but public again
    assert await store.versions("fsdd-theo") == [1]


def test_every_shipped_head_declares_itself_public():
    for task in SHIPPED:
        assert (DEFAULT_MODEL_DIR / "heads" / task / "VISIBILITY").read_text() == "public", task


async def test_a_deleted_public_id_recreated_by_a_tenant_is_private_again(
    seeded, head_files, fsdd_test
):
    clip = fsdd_bytes(fsdd_test[0])
    assert (await _put(seeded, "recycled", "acme", head_files["acme"])).status_code == 200
    assert (await _visibility(seeded, "recycled", "admin", "public")).status_code == 200
    assert (await seeded.delete("/v1/tasks/recycled", headers=auth("acme"))).status_code == 204
    assert (await _put(seeded, "recycled", "globex", head_files["globex"])).status_code == 200
    info = await seeded.get("/v1/tasks/recycled", headers=auth("globex"))
    assert info.json()["visibility"] == "private" and info.json()["owner"] == "globex"
    assert (await _transcribe(seeded, "recycled", "acme", clip)).status_code == 404
    listed = (await seeded.get("/v1/models", headers=auth("acme"))).json()
    assert "recycled" not in [m["id"] for m in listed["data"]]


async def test_an_invalid_visibility_from_an_admin_writes_no_version(seeded, head_files):
    store = seeded.app.state.runtime.store
    r = await _put(seeded, "never-made", "admin", head_files["acme"], visibility="everyone")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_visibility"
    assert (await seeded.get("/v1/tasks/never-made", headers=auth("admin"))).status_code == 404
    assert await store.list_tasks(0, 1000, "acme") == ([], 0)
