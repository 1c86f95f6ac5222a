"""Device slot pool: LRU placement, eviction, capacity errors, rank padding, failed writes."""

from __future__ import annotations

import pytest
import torch

from adapters_store.errors import HeadRejected
from adapters_store.families import make_head_spec
from adapters_store.head_batch import HeadBatch, controller_head_delta
from adapters_store.head_format import HeadMetadata, HeadRecord, HeadType
from adapters_store.slot_pool import DeviceSlotPool, SlotPoolExhausted

SPEC = make_head_spec("fp", hidden_dim=6, controller_dim=4, num_layers=2, max_ranks={"ffn": 8})
CPU = torch.device("cpu")


def _linear(task: str, value: float, version: int = 1) -> HeadRecord:
    return HeadRecord(
        HeadMetadata(task, "linear", "fp", version=version), {"V": torch.full((6, 4), value)}
    )


def _ffn(task: str, value: float, rank: int = 3, device: str = "cpu") -> HeadRecord:
    tensors = {
        "V1": torch.full((rank, 4), value, device=device),
        "V2": torch.full((6, rank), value, device=device),
    }
    return HeadRecord(HeadMetadata(task, "ffn", "fp", version=1, rank=rank), tensors)


def _slot_value(pool: DeviceSlotPool, head: HeadRecord) -> float:
    """The value a one-head batch for `head` reads from its slot (heads here are constant)."""
    batch = pool.head_batch([head])
    part = batch.families[HeadType(head.meta.head_type)]
    name = "V" if head.meta.head_type == "linear" else "V1"
    return float(part.pools[name][int(part.slots[0]), 0, 0])


def test_heads_get_slots_and_a_hit_reuses_the_slot():
    events = []
    pool = DeviceSlotPool(SPEC, 2, CPU, on_event=lambda *e: events.append(e))
    a, b = _linear("a", 1), _linear("b", 2)
    batch = pool.head_batch([a, None, b, a])
    linear = batch.families[HeadType.LINEAR]
    assert linear.slots.tolist() == [0, -1, 1, 0]
    assert linear.pools["V"][0, 0, 0] == 1 and linear.pools["V"][1, 0, 0] == 2
    assert batch.slots(HeadType.FFN) is None
    pool.head_batch([b])
    assert events.count(("device", "hit")) == 2 and events.count(("device", "miss")) == 2


def test_least_recently_used_head_is_evicted_and_new_versions_take_new_slots():
    pool = DeviceSlotPool(SPEC, 2, CPU)
    pool.head_batch([_linear("a", 1)])
    pool.head_batch([_linear("b", 2)])
    pool.head_batch([_linear("a", 1)])  # a is now most recent
    batch = pool.head_batch([_linear("c", 3)])  # evicts b
    linear = batch.families[HeadType.LINEAR]
    assert linear.slots.tolist() == [1]  # b's slot
    assert linear.pools["V"][1, 0, 0] == 3
    assert pool.resident(HeadType.LINEAR) == 2
    assert pool.slot_table(HeadType.LINEAR) == [("a", 1), ("c", 1)]
    assert _slot_value(pool, _linear("a", 9, version=2)) == 9


def test_a_batch_needing_more_heads_than_slots_is_refused_with_the_numbers():
    pool = DeviceSlotPool(SPEC, 2, CPU)
    with pytest.raises(SlotPoolExhausted, match="needs 3 linear heads.*capacity is 2"):
        pool.head_batch([_linear(t, 1) for t in "abc"])
    assert pool.free_slots(HeadType.LINEAR) == [0, 1]  # refused before touching a slot


def test_smaller_rank_ffn_heads_are_zero_padded_without_changing_the_output():
    pool = DeviceSlotPool(SPEC, 2, CPU)
    head = HeadRecord(
        HeadMetadata("f", "ffn", "fp", rank=3), {"V1": torch.randn(3, 4), "V2": torch.randn(6, 3)}
    )
    padded = pool.head_batch([head])
    assert padded.families[HeadType.FFN].pools["V1"].shape == (2, 8, 4)  # the spec's max rank
    exact = HeadBatch.from_heads([(HeadType.FFN, head.tensors)])
    h = torch.randn(1, 5, 4)
    torch.testing.assert_close(controller_head_delta(h, padded), controller_head_delta(h, exact))


def test_an_over_rank_head_is_refused_before_any_slot_is_evicted():
    """Regression (issue 12): the pool evicted a, then failed on c; d then landed in b's slot."""
    pool = DeviceSlotPool(SPEC, 2, CPU)
    a, b = _ffn("a", 1.0), _ffn("b", 2.0)
    pool.head_batch([a])
    pool.head_batch([b])
    with pytest.raises(HeadRejected, match="rank 16.*1..8"):
        pool.head_batch([_ffn("c", 3.0, rank=16)])
    assert pool.slot_table(HeadType.FFN) == [("a", 1), ("b", 1)]  # nothing evicted
    pool.head_batch([_ffn("d", 4.0)])  # evicts a, the least recently used
    assert _slot_value(pool, b) == 2.0  # b still reads b's weights, not d's
    assert _slot_value(pool, _ffn("d", 4.0)) == 4.0


def test_a_failed_copy_leaves_its_slot_free_and_unmapped():
    """Regression (issue 12): a write that fails must not leave a slot mapped twice."""
    pool = DeviceSlotPool(SPEC, 2, CPU)
    a, b = _ffn("a", 1.0), _ffn("b", 2.0)
    pool.head_batch([a])
    pool.head_batch([b])
    broken = _ffn("c", 3.0, device="meta")  # right shapes; copying it out of meta raises
    with pytest.raises(NotImplementedError):
        pool.head_batch([broken])
    assert pool.slot_table(HeadType.FFN) == [None, ("b", 1)]  # a evicted, c never mapped
    assert pool.free_slots(HeadType.FFN) == [0]
    pool.head_batch([_ffn("d", 4.0)])  # takes the freed slot 0, not b's
    assert pool.slot_table(HeadType.FFN) == [("d", 1), ("b", 1)]
    assert _slot_value(pool, b) == 2.0
    assert _slot_value(pool, _ffn("d", 4.0)) == 4.0


def test_a_head_whose_tensors_do_not_match_its_family_is_rejected():
    pool = DeviceSlotPool(SPEC, 2, CPU)
    wrong = HeadRecord(HeadMetadata("w", "linear", "fp", version=1), {"V": torch.zeros(4, 6)})
    with pytest.raises(HeadRejected, match="shape"):
        pool.head_batch([_linear("a", 1), wrong])
    assert pool.slot_table(HeadType.LINEAR) == [None, None]  # refused before a was placed


def test_pools_are_sized_by_each_familys_max_rank_from_the_spec():
    spec = make_head_spec("fp", 6, 4, 2, max_ranks={"ffn": 5, "residual": 7})
    pool = DeviceSlotPool(spec, 3, CPU)
    assert pool.max_rank(HeadType.FFN) == 5 and pool.max_rank(HeadType.RESIDUAL) == 7
    residual = HeadRecord(
        HeadMetadata("r", "residual", "fp", version=1, rank=7),
        {"down": torch.ones(2, 7, 6), "up": torch.ones(2, 6, 7)},
    )
    batch = pool.head_batch([residual])
    assert batch.families[HeadType.RESIDUAL].pools["down"].shape == (3, 2, 7, 6)
    assert batch.uses_residual and not batch.uses_controller
