"""Device slot pool: LRU placement, eviction, capacity errors, rank padding."""

from __future__ import annotations

import pytest
import torch

from adapters_store.head_format import HeadMetadata, HeadRecord, HeadSpec, HeadType
from server.model.adapters import HeadBatch, controller_head_delta
from server.slot_pool import DeviceSlotPool, SlotPoolExhausted

SPEC = HeadSpec("fp", hidden_dim=6, controller_dim=4, num_layers=2)


def _linear(task: str, value: float, version: int = 1) -> HeadRecord:
    return HeadRecord(
        HeadMetadata(task, "linear", "fp", version=version), {"V": torch.full((6, 4), value)}
    )


def test_heads_get_slots_and_a_hit_reuses_the_slot():
    events = []
    pool = DeviceSlotPool(SPEC, 2, torch.device("cpu"), on_event=lambda *e: events.append(e))
    a, b = _linear("a", 1), _linear("b", 2)
    batch = pool.head_batch([a, None, b, a])
    assert batch.linear_slots.tolist() == [0, -1, 1, 0]
    assert batch.linear_pool[0, 0, 0] == 1 and batch.linear_pool[1, 0, 0] == 2
    pool.head_batch([b])
    assert events.count(("device", "hit")) == 2 and events.count(("device", "miss")) == 2


def test_least_recently_used_head_is_evicted_and_new_versions_take_new_slots():
    pool = DeviceSlotPool(SPEC, 2, torch.device("cpu"))
    pool.head_batch([_linear("a", 1)])
    pool.head_batch([_linear("b", 2)])
    pool.head_batch([_linear("a", 1)])  # a is now most recent
    batch = pool.head_batch([_linear("c", 3)])  # evicts b
    assert batch.linear_slots.tolist() == [1]  # b's slot
    assert batch.linear_pool[1, 0, 0] == 3
    assert pool.resident(HeadType.LINEAR) == 2
    v2 = pool.head_batch([_linear("a", 9, version=2)])
    assert v2.linear_pool[v2.linear_slots[0], 0, 0] == 9


def test_a_batch_needing_more_heads_than_slots_is_refused_with_the_numbers():
    pool = DeviceSlotPool(SPEC, 2, torch.device("cpu"))
    with pytest.raises(SlotPoolExhausted, match="needs 3 linear heads.*capacity is 2"):
        pool.head_batch([_linear(t, 1) for t in "abc"])


def test_smaller_rank_ffn_heads_are_zero_padded_without_changing_the_output():
    pool = DeviceSlotPool(SPEC, 2, torch.device("cpu"), max_rank=8)
    head = HeadRecord(
        HeadMetadata("f", "ffn", "fp", rank=3), {"V1": torch.randn(3, 4), "V2": torch.randn(6, 3)}
    )
    padded = pool.head_batch([head])
    exact = HeadBatch.from_heads([(HeadType.FFN, head.tensors)])
    h = torch.randn(1, 5, 4)
    torch.testing.assert_close(controller_head_delta(h, padded), controller_head_delta(h, exact))
