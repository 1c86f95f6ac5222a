"""Create / replace / rollback / delete racing on one id from two tenants, both stores.

Every round fires a shuffled mix of all the lifecycle operations of both tenants at
once (asyncio.gather through the real app), then checks the invariants of issue 12
item 3 against what the store holds.
"""

from __future__ import annotations

import asyncio
import random

import redis as redis_sync
import torch

from adapters_store.head_format import decode_head
from tests.helpers import fsdd_bytes
from tests.security.helpers import auth

TENANTS = ("acme", "globex")
OK = {200, 204, 404}  # 404: the task was gone or the other tenant's at that moment


def _stored_versions(settings, task: str) -> list[int]:
    """Versions with a blob in the backing store (files on disk, keys in Redis)."""
    if settings.store == "disk":
        folder = settings.heads_path / task
        if not folder.exists():
            return []
        return sorted(int(p.stem[1:]) for p in folder.glob("v*.safetensors"))
    client = redis_sync.Redis.from_url(settings.redis_url.get_secret_value())
    try:
        keys = client.keys(f"{settings.redis_prefix}:task:{task}:v:*")
        return sorted(int(k.rsplit(b":", 1)[1]) for k in keys)
    finally:
        client.close()


def _same_head(data: bytes, original: bytes) -> bool:
    got, want = decode_head(data), decode_head(original)
    return all(torch.equal(got.tensors[k], want.tensors[k]) for k in want.tensors)


async def _op(client, kind: str, who: str, task: str, heads: dict, rng: random.Random):
    path = f"/v1/tasks/{task}"
    if kind == "put":
        r = await client.put(path, files={"file": ("h", heads[who])}, headers=auth(who))
    elif kind == "delete":
        r = await client.delete(path, headers=auth(who))
    elif kind == "rollback":
        version = rng.randint(1, 40)
        r = await client.post(f"{path}/rollback", json={"version": version}, headers=auth(who))
    else:
        r = await client.get(f"{path}/head", headers=auth(who))
    return kind, who, r


async def test_racing_lifecycle_operations_keep_every_invariant(tenants, head_files, fsdd_test):
    client, settings = tenants
    rng = random.Random(12)
    task = "raced"
    clip = fsdd_bytes(fsdd_test[0])
    given: list[int] = []  # every version a PUT reported, across all rounds
    deleted: set[int] = set()
    for round_ in range(25):
        ops = [(k, who) for k in ("put", "put", "delete", "rollback", "get") for who in TENANTS]
        rng.shuffle(ops)
        ops = ops[: rng.randint(3, len(ops))]
        done = await asyncio.gather(*(_op(client, k, w, task, head_files, rng) for k, w in ops))

        for kind, who, r in done:
            assert r.status_code in OK, (round_, kind, who, r.status_code, r.text)
            if kind == "put" and r.status_code == 200:
                assert r.json()["owner"] == who
                given.append(r.json()["version"])
            if kind == "get" and r.status_code == 200:  # a tenant reads only its own head
                assert _same_head(r.content, head_files[who]), (round_, who)
                assert decode_head(r.content).meta.owner == who
        assert len(given) == len(set(given)), f"a version was reused: {given}"

        admin = await client.get(f"/v1/tasks/{task}", headers=auth("admin"))
        stored = _stored_versions(settings, task)
        if admin.status_code == 404:  # deleted: nothing left behind, nothing serves
            assert stored == [], (round_, stored)
            deleted.update(given)
            for who in TENANTS:
                r = await client.post(
                    f"/v1/transcribe?task_id={task}", content=clip, headers=auth(who)
                )
                assert r.status_code == 404, (round_, who)
            continue
        info = admin.json()
        owner, versions = info["owner"], info["versions"]
        assert owner in TENANTS, (round_, owner)
        assert versions == sorted(set(versions)), versions  # strictly increasing
        assert info["version"] in versions
        assert not deleted & set(versions), "a deleted version came back"
        assert stored == versions, (round_, stored, versions)  # no orphans, no holes
        other = TENANTS[1 - TENANTS.index(owner)]
        assert (await client.get(f"/v1/tasks/{task}", headers=auth(owner))).status_code == 200
        for path in (f"/v1/tasks/{task}", f"/v1/tasks/{task}/head"):
            assert (await client.get(path, headers=auth(other))).status_code == 404
        own = await client.get(f"/v1/tasks/{task}/head", headers=auth(owner))
        assert _same_head(own.content, head_files[owner])
        r = await client.post(f"/v1/transcribe?task_id={task}", content=clip, headers=auth(owner))
        assert r.status_code == 200 and r.json()["head_version"] == info["version"]
    assert len(given) >= 10  # the rounds really did register heads
