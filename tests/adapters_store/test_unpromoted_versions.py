"""`put(make_current=False)`: a version is added while the task keeps serving its current
one, on both stores (what a fine-tuning job does with a head that did not win)."""

from __future__ import annotations

import pytest
import torch

from adapters_store.errors import UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord, decode_head


def _record(task: str, owner: str | None, value: float) -> HeadRecord:
    return HeadRecord(
        HeadMetadata(task, "linear", "fp", owner=owner), {"V": torch.full((3, 2), value)}
    )


async def test_an_unpromoted_version_is_stored_but_never_served(store):
    await store.put(_record("t", "acme", 1.0), acting_tenant="acme")
    added = await store.put(_record("t", "acme", 2.0), acting_tenant="acme", make_current=False)
    assert added.meta.version == 2
    assert await store.current_version("t") == 1
    assert decode_head(await store.get_bytes("t")).tensors["V"][0, 0] == 1.0
    assert decode_head(await store.get_bytes("t", 2)).tensors["V"][0, 0] == 2.0
    assert (await store.access("t")).owner == "acme"
    await store.set_current("t", 2, acting_tenant="acme")  # promoted by hand
    assert await store.current_version("t") == 2


async def test_an_unpromoted_version_of_a_missing_or_foreign_task_writes_nothing(store):
    with pytest.raises(UnknownTask):
        await store.put(_record("new", "acme", 1.0), acting_tenant="acme", make_current=False)
    with pytest.raises(UnknownTask):
        await store.current_version("new")
    await store.put(_record("t", "acme", 1.0), acting_tenant="acme")
    with pytest.raises(UnknownTask):
        await store.put(_record("t", "mallory", 2.0), acting_tenant="mallory", make_current=False)
    assert await store.current_version("t") == 1
