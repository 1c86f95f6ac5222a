"""Device tier of the head cache: preallocated per-type tensors, LRU over slots.

A fused batch names heads by slot index, so the kernels read weights straight
from these pools: no per-request weight copies. A head enters a slot once
(host -> device copy) and stays until evicted by newer heads. FFN and residual
heads of smaller rank are zero-padded to the pool's rank, which leaves their
output unchanged (the padded units are ReLU(0) * 0).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

from adapters_store.head_format import HeadRecord, HeadSpec, HeadType, head_shapes
from server.errors import ServingError
from server.model.adapters import HeadBatch, pool_fields


class SlotPoolExhausted(ServingError):
    code = "slot_pool_exhausted"


class DeviceSlotPool:
    def __init__(
        self,
        spec: HeadSpec,
        capacity: int,
        device: torch.device,
        max_rank: int = 64,
        on_event: Callable[[str, str], None] = lambda tier, event: None,
    ) -> None:
        self.spec = spec
        self.capacity = capacity
        self.device = device
        self.max_rank = max_rank
        self._pools: dict[HeadType, dict[str, torch.Tensor]] = {}
        self._slots: dict[HeadType, OrderedDict[tuple[str, int], int]] = {
            t: OrderedDict() for t in HeadType
        }
        self._on_event = on_event

    def resident(self, head_type: HeadType) -> int:
        return len(self._slots[head_type])

    def head_batch(self, heads: list[HeadRecord | None]) -> HeadBatch:
        """Place every head of the batch in a slot; returns the batch's layout."""
        slots = {t: [-1] * len(heads) for t in HeadType}
        needed: dict[HeadType, set[tuple[str, int]]] = {t: set() for t in HeadType}
        for head in heads:
            if head is not None:
                needed[HeadType(head.meta.head_type)].add(_key(head))
        for head_type, keys in needed.items():
            if len(keys) > self.capacity:
                raise SlotPoolExhausted(
                    f"batch needs {len(keys)} {head_type.value} heads, "
                    f"device slot capacity is {self.capacity}"
                )
        for b, head in enumerate(heads):
            if head is not None:
                head_type = HeadType(head.meta.head_type)
                slots[head_type][b] = self._slot(head_type, head, needed[head_type])
        batch = HeadBatch(batch_size=len(heads))
        for head_type in HeadType:
            if any(s >= 0 for s in slots[head_type]):
                for tensor_name, field in pool_fields(head_type):
                    setattr(batch, field, self._pools[head_type][tensor_name])
                setattr(
                    batch,
                    f"{head_type.value}_slots",
                    torch.tensor(slots[head_type], device=self.device),
                )
        return batch

    def _slot(self, head_type: HeadType, head: HeadRecord, in_batch: set) -> int:
        lru = self._slots[head_type]
        key = _key(head)
        if key in lru:
            lru.move_to_end(key)
            self._on_event("device", "hit")
            return lru[key]
        self._on_event("device", "miss")
        if len(lru) < self.capacity:
            slot = len(lru)
        else:
            victim = next(k for k in lru if k not in in_batch)
            slot = lru.pop(victim)
            self._on_event("device", "eviction")
        self._write(head_type, slot, head)
        lru[key] = slot
        return slot

    def _write(self, head_type: HeadType, slot: int, head: HeadRecord) -> None:
        pools = self._pools.get(head_type)
        if pools is None:
            shapes = head_shapes(
                head_type,
                self.spec.hidden_dim,
                self.spec.controller_dim,
                self.max_rank,
                self.spec.num_layers,
            )
            pools = {
                name: torch.zeros((self.capacity, *shape), device=self.device)
                for name, shape in shapes.items()
            }
            self._pools[head_type] = pools
        if head_type != HeadType.LINEAR and head.meta.rank > self.max_rank:
            raise SlotPoolExhausted(f"head rank {head.meta.rank} exceeds pool rank {self.max_rank}")
        for name, tensor in head.tensors.items():
            target = pools[name][slot]
            target.zero_()
            target[tuple(slice(0, n) for n in tensor.shape)].copy_(tensor, non_blocking=True)


def _key(head: HeadRecord) -> tuple[str, int]:
    return head.meta.task_id, head.meta.version
