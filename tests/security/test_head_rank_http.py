"""Head ranks over real HTTP: what the slot pool cannot hold is refused, never a 500.

The largest rank per head family is a setting (HRA_HEADS__MAX_FFN_RANK,
HRA_HEADS__MAX_RESIDUAL_RANK); HeadSpec carries it to upload validation, to
the host cache's decode and to the slot pool's sizes, so a head the pool
could not hold is refused with 422 `head_rejected` at upload, and one already
stored (say, before the limit was lowered) fails only its own requests.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from adapters_store.disk_store import DiskStore
from adapters_store.families import FAMILIES, ModelDims
from adapters_store.head_format import HeadMetadata, HeadRecord, encode_head
from server.config import HeadSettings
from tests.helpers import fsdd_bytes, make_settings, running_client


def _head(fp: str, dims: ModelDims, kind: str, rank: int, task: str) -> HeadRecord:
    tensors = FAMILIES[kind].init(dims, rank, torch.Generator().manual_seed(rank))
    return HeadRecord(HeadMetadata(task, kind, fp, rank=rank), tensors)


@pytest.fixture
def dims(default_model) -> ModelDims:
    model, _ = default_model
    return ModelDims(model.backbone.hidden_dim, model.controller.dim, model.backbone.num_layers)


@pytest.mark.parametrize("kind", ["ffn", "residual"])
async def test_a_head_above_the_configured_max_rank_is_refused_at_upload(
    tmp_path, default_model, dims, fsdd_test, kind
):
    _, fp = default_model
    settings = make_settings(tmp_path, heads=HeadSettings(max_ffn_rank=8, max_residual_rank=8))
    clip = fsdd_bytes(fsdd_test[0])
    async with running_client(settings) as client:
        too_big = encode_head(_head(fp, dims, kind, 9, "big"))
        r = await client.put("/v1/tasks/big", files={"file": ("h.safetensors", too_big)})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "head_rejected"
        assert "rank 9 is outside 1..8" in r.json()["error"]["message"]
        fits = encode_head(_head(fp, dims, kind, 8, "fits"))
        r = await client.put("/v1/tasks/fits", files={"file": ("h.safetensors", fits)})
        assert r.status_code == 200, r.text
        r = await client.post("/v1/transcribe?task_id=fits", content=clip)
        assert r.status_code == 200, r.text
        assert r.json()["head_version"] == 1


async def test_a_stored_head_the_pool_cannot_hold_fails_only_its_own_requests(
    tmp_path, default_model, dims, fsdd_test
):
    _, fp = default_model
    settings = make_settings(tmp_path, heads=HeadSettings(max_ffn_rank=8))
    DiskStore(settings.heads_path).put(_head(fp, dims, "ffn", 16, "legacy"))  # before the limit
    clips = [fsdd_bytes(u) for u in fsdd_test if u.task == "fsdd-jackson"][:6]
    async with running_client(settings) as client:
        alone = [
            (await client.post("/v1/transcribe?task_id=fsdd-jackson", content=c)).json()["text"]
            for c in clips
        ]
        requests = [client.post("/v1/transcribe?task_id=legacy", content=clips[0])]
        requests += [client.post("/v1/transcribe?task_id=fsdd-jackson", content=c) for c in clips]
        bad, *good = await asyncio.gather(*requests)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "head_rejected"
        assert [r.status_code for r in good] == [200] * len(clips)
        assert [r.json()["text"] for r in good] == alone
