"""Head registration API: upload, download, copy, rollback, delete, refusals."""

from __future__ import annotations

import pickle

import torch

from adapters_store.head_format import HeadMetadata, HeadRecord, encode_head
from tests.helpers import fsdd_bytes


async def _text(client, task, clip) -> str:
    r = await client.post(f"/v1/transcribe?task_id={task}", content=clip)
    assert r.status_code == 200, r.text
    return r.json()["text"]


async def test_downloaded_head_uploaded_under_a_new_id_transcribes_identically(client, fsdd_test):
    head = await client.get("/v1/tasks/fsdd-nicolas/head")
    assert head.status_code == 200
    r = await client.put(
        "/v1/tasks/nicolas-copy",
        files={"file": ("h.safetensors", head.content)},
        data={"metadata": '{"owner": "acme", "description": "copy", "tier": 2}'},
    )
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["version"] == 1 and info["owner"] == "acme" and info["extra"] == {"tier": 2}
    for u in [u for u in fsdd_test if u.task == "fsdd-nicolas"][:5]:
        clip = fsdd_bytes(u)
        assert await _text(client, "nicolas-copy", clip) == await _text(
            client, "fsdd-nicolas", clip
        )


async def test_new_version_is_served_at_once_and_rollback_restores_the_old_output(
    client, fsdd_test
):
    clips = [fsdd_bytes(u) for u in fsdd_test if u.task == "fsdd-george"][:6]
    current = (await client.get("/v1/tasks/fsdd-george")).json()["version"]
    before = [await _text(client, "fsdd-george", c) for c in clips]
    other = (await client.get("/v1/tasks/synth-whisper/head")).content  # a different head
    r = await client.put("/v1/tasks/fsdd-george", files={"file": ("h.safetensors", other)})
    assert r.json()["version"] == current + 1
    replaced = await client.post("/v1/transcribe?task_id=fsdd-george", content=clips[0])
    assert replaced.json()["head_version"] == current + 1
    after = [await _text(client, "fsdd-george", c) for c in clips]
    assert after != before  # the whisper head really is another head
    r = await client.post("/v1/tasks/fsdd-george/rollback", json={"version": current})
    assert r.status_code == 200 and r.json()["version"] == current
    assert r.json()["versions"][-2:] == [current, current + 1]
    assert [await _text(client, "fsdd-george", c) for c in clips] == before


async def test_a_registered_vocabulary_restricts_transcripts_and_can_be_cleared(client, fsdd_test):
    info = (await client.get("/v1/tasks/fsdd-theo")).json()
    assert info["vocabulary"][:3] == ["zero", "one", "two"]  # shipped FSDD heads carry digits
    head = (await client.get("/v1/tasks/fsdd-theo/head")).content
    clips = [fsdd_bytes(u) for u in fsdd_test if u.task == "fsdd-theo"][::10]
    r = await client.put(
        "/v1/tasks/yes-no",
        files={"file": ("h.safetensors", head)},
        data={"vocabulary": "yes, no\nmaybe"},
    )
    assert r.status_code == 200 and r.json()["vocabulary"] == ["yes", "no", "maybe"]
    texts = [await _text(client, "yes-no", c) for c in clips]
    assert all(set(t.split()) <= {"yes", "no", "maybe"} for t in texts)
    assert any(texts)
    r = await client.put(
        "/v1/tasks/yes-no", files={"file": ("h.safetensors", head)}, data={"vocabulary": "[]"}
    )
    assert r.json()["vocabulary"] == []
    greedy = [await _text(client, "yes-no", c) for c in clips]
    assert not any(set(t.split()) <= {"yes", "no", "maybe"} and t for t in greedy)


async def test_a_vocabulary_of_unspellable_words_is_refused_and_nothing_is_stored(client):
    head = (await client.get("/v1/tasks/fsdd-theo/head")).content
    r = await client.put(
        "/v1/tasks/bad-words",
        files={"file": ("h.safetensors", head)},
        data={"vocabulary": "Hello wörld 42"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_vocabulary"
    assert (await client.get("/v1/tasks/bad-words")).status_code == 404
    assert (await client.get("/readyz")).status_code == 200


async def test_listing_is_paginated_and_inspect_reports_versions(client):
    page = (await client.get("/v1/tasks?offset=2&limit=3")).json()
    everything = (await client.get("/v1/tasks?limit=1000")).json()
    assert page["tasks"] == everything["tasks"][2:5] and page["total"] == everything["total"]
    info = (await client.get("/v1/tasks/synth-noisy")).json()
    assert info["head_type"] == "linear" and info["versions"] == [1] and info["parameters"] > 0


async def test_delete_makes_the_task_unknown(client, fsdd_test):
    assert (await client.delete("/v1/tasks/synth-child")).status_code == 204
    r = await client.post("/v1/transcribe?task_id=synth-child", content=fsdd_bytes(fsdd_test[0]))
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_task"
    assert (await client.delete("/v1/tasks/synth-child")).status_code == 404


async def test_bad_heads_are_refused_and_the_previous_version_keeps_serving(client, fsdd_test):
    clip = fsdd_bytes(fsdd_test[0])
    good = await _text(client, "fsdd-theo", clip)
    versions = (await client.get("/v1/tasks/fsdd-theo")).json()["versions"]
    real = (await client.get("/v1/tasks/fsdd-theo/head")).content
    meta = HeadMetadata("x", "linear", "0" * 16)

    class Exploit:
        def __reduce__(self):
            return (exec, ("raise SystemExit",))

    bad_uploads = {
        "pickle": (pickle.dumps(Exploit()), "head_rejected"),
        "garbage": (b"\x00\x01garbage", "head_rejected"),
        "foreign fingerprint": (
            encode_head(HeadRecord(meta, {"V": torch.zeros(144, 32)})),
            "fingerprint_mismatch",
        ),
        "truncated": (real[: len(real) // 2], "head_rejected"),
    }
    for name, (data, code) in bad_uploads.items():
        r = await client.put("/v1/tasks/fsdd-theo", files={"file": ("h.safetensors", data)})
        assert r.status_code == 422, name
        assert r.json()["error"]["code"] == code, name
    r = await client.put("/v1/tasks/..%2Fx", files={"file": ("h.safetensors", real)})
    assert r.status_code in (404, 422)
    info = (await client.get("/v1/tasks/fsdd-theo")).json()
    assert info["versions"] == versions
    assert await _text(client, "fsdd-theo", clip) == good


async def test_base_is_reserved(client):
    real = (await client.get("/v1/tasks/fsdd-theo/head")).content
    r = await client.put("/v1/tasks/base", files={"file": ("h.safetensors", real)})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
