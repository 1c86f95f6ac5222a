"""Head lifecycle defects of issue 12, each through real HTTP on both stores."""

from __future__ import annotations

import asyncio
import json

from adapters_store.head_format import decode_head, encode_head
from tests.helpers import fsdd_bytes
from tests.security.helpers import auth


async def _put(client, task, who, data, metadata=None):
    body = {"metadata": json.dumps(metadata)} if metadata is not None else {}
    return await client.put(
        f"/v1/tasks/{task}", files={"file": ("h", data)}, data=body, headers=auth(who)
    )


async def test_a_deleted_and_recreated_id_belongs_only_to_its_new_owner(tenants, head_files):
    client, _ = tenants
    first = await _put(client, "shared-id", "acme", head_files["acme"])
    assert first.status_code == 200, first.text
    assert (await client.get("/v1/tasks/shared-id", headers=auth("acme"))).status_code == 200
    assert (await client.delete("/v1/tasks/shared-id", headers=auth("acme"))).status_code == 204

    second = await _put(client, "shared-id", "globex", head_files["globex"])
    assert second.status_code == 200 and second.json()["owner"] == "globex"
    assert second.json()["version"] > first.json()["version"]  # never reused

    for method, path in [
        ("get", "/v1/tasks/shared-id"),
        ("get", "/v1/tasks/shared-id/head"),
        ("delete", "/v1/tasks/shared-id"),
    ]:
        r = await getattr(client, method)(path, headers=auth("acme"))
        assert r.status_code == 404, (method, path, r.status_code)
    info = await client.get("/v1/tasks/shared-id", headers=auth("globex"))
    assert info.status_code == 200 and info.json()["owner"] == "globex"
    download = await client.get("/v1/tasks/shared-id/head", headers=auth("globex"))
    assert (
        download.content
        == (await client.get("/v1/tasks/shared-id/head", headers=auth("admin"))).content
    )
    assert decode_head(download.content).meta.owner == "globex"


async def test_a_deleted_head_does_not_serve_even_after_the_id_is_reused(
    tenants, head_files, fsdd_test
):
    client, _ = tenants
    clip = fsdd_bytes(fsdd_test[0])
    assert (await _put(client, "gone", "acme", head_files["acme"])).status_code == 200
    used = await client.post("/v1/transcribe?task_id=gone", content=clip, headers=auth("acme"))
    assert used.status_code == 200
    assert (await client.delete("/v1/tasks/gone", headers=auth("acme"))).status_code == 204
    r = await client.post("/v1/transcribe?task_id=gone", content=clip, headers=auth("acme"))
    assert r.status_code == 404
    again = await _put(client, "gone", "acme", head_files["globex"])
    assert again.status_code == 200
    r = await client.post("/v1/transcribe?task_id=gone", content=clip, headers=auth("acme"))
    assert r.status_code == 200 and r.json()["head_version"] == again.json()["version"]
    assert r.json()["head_version"] != used.json()["head_version"]


async def test_of_two_tenants_racing_for_a_new_id_exactly_one_wins(tenants, head_files):
    client, _ = tenants
    for i in range(8):
        task = f"contested-{i}"
        a, b = await asyncio.gather(
            _put(client, task, "acme", head_files["acme"]),
            _put(client, task, "globex", head_files["globex"]),
        )
        assert sorted([a.status_code, b.status_code]) == [200, 404], (a.text, b.text)
        loser = a if a.status_code == 404 else b
        assert loser.json()["error"]["code"] == "unknown_task"
        winner = "acme" if a.status_code == 200 else "globex"
        info = (await client.get(f"/v1/tasks/{task}", headers=auth("admin"))).json()
        assert info["owner"] == winner and info["versions"] == [1]


async def test_an_admin_update_keeps_the_owner_unless_it_sets_one(tenants, head_files):
    client, _ = tenants
    assert (await _put(client, "kept", "acme", head_files["acme"])).status_code == 200
    shipped = head_files["globex"]  # its own metadata names no owner
    r = await _put(client, "kept", "admin", shipped)
    assert r.status_code == 200 and r.json()["owner"] == "acme"
    r = await _put(client, "kept", "admin", shipped, {"description": "x"})
    assert r.status_code == 200 and r.json()["owner"] == "acme"
    assert (await client.get("/v1/tasks/kept", headers=auth("acme"))).status_code == 200
    r = await _put(client, "kept", "admin", shipped, {"owner": "globex"})
    assert r.status_code == 200 and r.json()["owner"] == "globex"
    assert (await client.get("/v1/tasks/kept", headers=auth("acme"))).status_code == 404
    assert (await client.get("/v1/tasks/kept", headers=auth("globex"))).status_code == 200
    listing = (await client.get("/v1/tasks", headers=auth("acme"))).json()
    assert "kept" not in listing["tasks"]


async def test_a_put_is_either_refused_with_nothing_stored_or_reported_as_stored(
    tenants, head_files
):
    client, _ = tenants
    deep: object = []
    for _ in range(300):  # parses, stores, but too deep to serialize into the answer
        deep = [deep]
    for metadata in ({"score": float("nan")}, {"score": float("inf")}, {"deep": deep}):
        r = await _put(client, "odd-meta", "acme", head_files["acme"], metadata)
        assert r.status_code in (200, 400), (metadata.keys(), r.status_code)
        listed = await client.get("/v1/tasks/odd-meta", headers=auth("acme"))
        assert listed.status_code == (200 if r.status_code == 200 else 404)


async def test_odd_metadata_inside_the_head_file_is_refused_before_anything_is_stored(
    tenants, head_files
):
    client, _ = tenants
    shipped = decode_head(head_files["acme"])
    deep: object = {}
    for _ in range(300):
        deep = {"d": deep}
    odd = {
        "owner": {"owner": 5},
        "description": {"description": ["x"]},
        "extra list": {"extra": [1, 2]},
        "extra nan": {"extra": {"x": float("nan")}},
        "extra deep": {"extra": deep},
        "rank": {"rank": "x"},
    }
    for name, changes in odd.items():
        data = encode_head(shipped.with_meta(**changes))
        r = await _put(client, f"odd-{name.replace(' ', '-')}", "admin", data)
        assert r.status_code in (400, 422), (name, r.status_code)
        listing = (await client.get("/v1/tasks?limit=1000", headers=auth("admin"))).json()
        assert f"odd-{name.replace(' ', '-')}" not in listing["tasks"], name


async def test_probing_another_tenants_task_ids_loads_none_of_its_heads(
    tenants, head_files, fsdd_test
):
    client, _ = tenants
    cache = client.app.state.runtime.cache
    for i in range(5):
        r = await _put(client, f"acme-private-{i}", "acme", head_files["acme"])
        assert r.status_code == 200, r.text
    loaded = len(cache), cache.bytes
    clip = fsdd_bytes(fsdd_test[0])
    for i in range(5):
        for r in (
            await client.post(
                f"/v1/transcribe?task_id=acme-private-{i}", content=clip, headers=auth("globex")
            ),
            await client.get(f"/v1/tasks/acme-private-{i}", headers=auth("globex")),
            await client.get(f"/v1/tasks/acme-private-{i}/head", headers=auth("globex")),
        ):
            assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_task"
    assert (len(cache), cache.bytes) == loaded  # 404s without decoding acme's heads
    r = await client.post(
        "/v1/transcribe?task_id=acme-private-0", content=clip, headers=auth("acme")
    )
    assert r.status_code == 200 and len(cache) == loaded[0] + 1  # its owner's use loads it
