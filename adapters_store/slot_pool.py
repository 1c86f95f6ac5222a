"""Device tier of the head cache: preallocated pools per head family, LRU over slots.

A fused batch names heads by slot index, so the kernels read weights straight
from these pools: no per-request weight copies. A head enters a slot once
(host -> device copy) and stays until evicted by newer heads. FFN and residual
heads of smaller rank are zero-padded to the pool's rank (the family's max rank
from HeadSpec), which leaves their output unchanged (adapters_store/families.py).

Each family keeps, as vLLM's LoRA model manager does, an index -> key table
and a free list that partition the slots, plus a key -> index map and LRU order:
    place(head):  validate (no slot touched) -> take a free slot, else evict the
                  least recently used head not in this batch -> write -> map
A slot is mapped to a head only after the head's tensors are written into it;
a failed write leaves the slot free and unmapped, so no later head can find
another head's weights under its own key.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

import torch

from adapters_store.errors import HeadRejected
from adapters_store.families import FAMILIES, FamilyBatch, HeadFamily, dims_of
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadRecord, HeadSpec, HeadType
from kernels import REFERENCE, HeadKernel
from server.errors import SlotPoolExhausted

logger = logging.getLogger(__name__)

HeadKey = tuple[str, int]  # (task id, version): versions are never reused


class _FamilyPool:
    """The slots of one head family: weights, index -> key table, free list, LRU."""

    def __init__(self, family: HeadFamily, spec: HeadSpec, capacity: int, device: torch.device):
        self.family = family
        self.capacity = capacity
        self.max_rank = spec.max_rank(family.kind)
        self.dims = dims_of(spec)
        self.device = device
        self.weights: dict[str, torch.Tensor] | None = None  # name -> [S, ...], on first write
        self.table: list[HeadKey | None] = [None] * capacity  # slot -> key written there
        self.free: list[int] = list(range(capacity - 1, -1, -1))  # pop() gives slot 0 first
        self.index: OrderedDict[HeadKey, int] = OrderedDict()  # key -> slot, LRU first

    def check(self, head: HeadRecord) -> None:
        """Raise HeadRejected if the head cannot sit in this pool; touches no slot."""
        rank = head.meta.rank if self.family.has_rank else 0
        if self.family.has_rank and not 0 < rank <= self.max_rank:
            raise HeadRejected(
                f"{self.family.kind.value} head {head.meta.task_id!r} has rank {rank}, "
                f"the device pool holds ranks 1..{self.max_rank}"
            )
        problem = self.family.fits(head.tensors, rank, self.dims)
        if problem:
            raise HeadRejected(f"head {head.meta.task_id!r} does not fit the model: {problem}")

    def lookup(self, key: HeadKey) -> int | None:
        slot = self.index.get(key)
        if slot is not None:
            self.index.move_to_end(key)
        return slot

    def take_slot(self, in_batch: set[HeadKey]) -> tuple[int, bool]:
        """A free slot, evicting the LRU head outside this batch if none: (slot, evicted)."""
        if self.free:
            return self.free.pop(), False
        victim = next((k for k in self.index if k not in in_batch), None)
        if victim is None:
            raise SlotPoolExhausted(
                f"no free {self.family.kind.value} slot: all {self.capacity} hold heads of "
                f"this batch ({len(in_batch)} needed)"
            )
        slot = self.index.pop(victim)
        self.table[slot] = None  # unmapped before its weights are overwritten
        return slot, True

    def write(self, slot: int, head: HeadRecord) -> None:
        """Copy the head into `slot`, then map it; on failure the slot goes back free."""
        key = (head.meta.task_id, head.meta.version)
        try:
            if self.weights is None:
                shapes = self.family.pool_shapes(self.dims, self.max_rank)
                self.weights = {
                    name: torch.zeros((self.capacity, *shape), device=self.device)
                    for name, shape in shapes.items()
                }
            self.family.write_padded({n: w[slot] for n, w in self.weights.items()}, head.tensors)
        except BaseException:
            self.free.append(slot)
            raise
        self.table[slot] = key
        self.index[key] = slot

    def slot_weights(self) -> dict[str, torch.Tensor]:
        assert self.weights is not None, "a mapped slot implies allocated weights"
        return self.weights


class DeviceSlotPool:
    def __init__(
        self,
        spec: HeadSpec,
        capacity: int,
        device: torch.device,
        on_event: Callable[[str, str], None] = lambda tier, event: None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"slot pool capacity must be at least 1, got {capacity}")
        self.spec = spec
        self.capacity = capacity
        self.device = device
        self._families = {t: _FamilyPool(f, spec, capacity, device) for t, f in FAMILIES.items()}
        self._on_event = on_event

    def resident(self, head_type: HeadType) -> int:
        return len(self._families[HeadType(head_type)].index)

    def max_rank(self, head_type: HeadType) -> int:
        return self._families[HeadType(head_type)].max_rank

    def slot_table(self, head_type: HeadType) -> list[HeadKey | None]:
        """Slot -> (task, version) written there, None for free slots (a copy)."""
        return list(self._families[HeadType(head_type)].table)

    def free_slots(self, head_type: HeadType) -> list[int]:
        return sorted(self._families[HeadType(head_type)].free)

    def weights(self, head_type: HeadType) -> dict[str, torch.Tensor] | None:
        """The family's pools, name -> [S, ...] (None before its first head)."""
        return self._families[HeadType(head_type)].weights

    def head_batch(
        self, heads: list[HeadRecord | None], kernel: HeadKernel = REFERENCE
    ) -> HeadBatch:
        """Place every head of the batch in a slot; returns the batch's layout, whose
        families read their slots with `kernel` (the engine's choice for this device).

        Raises HeadRejected (a head no slot can hold) or SlotPoolExhausted (more
        distinct heads of one family than slots) before any slot changes.
        """
        needed: dict[HeadType, set[HeadKey]] = {t: set() for t in HeadType}
        for head in heads:
            if head is not None:
                kind, key = _type_of(head), _key(head)
                if key not in needed[kind] and key not in self._families[kind].index:
                    self._families[kind].check(head)  # resident heads passed it when written
                needed[kind].add(key)
        for head_type, keys in needed.items():
            if len(keys) > self.capacity:
                raise SlotPoolExhausted(
                    f"batch needs {len(keys)} {head_type.value} heads, "
                    f"device slot capacity is {self.capacity}"
                )
        slots = {t: [-1] * len(heads) for t in HeadType}
        for b, head in enumerate(heads):
            if head is not None:
                head_type = _type_of(head)
                slots[head_type][b] = self._place(head_type, head, needed[head_type])
        families = {
            t: FamilyBatch(
                self._families[t].slot_weights(),
                torch.tensor(slots[t], device=self.device),
                kernel,
            )
            for t in HeadType
            if needed[t]
        }
        return HeadBatch(len(heads), families)

    def _place(self, head_type: HeadType, head: HeadRecord, in_batch: set[HeadKey]) -> int:
        pool = self._families[head_type]
        key = _key(head)
        slot = pool.lookup(key)
        if slot is not None:
            self._on_event("device", "hit")
            return slot
        self._on_event("device", "miss")
        slot, evicted = pool.take_slot(in_batch)
        if evicted:
            self._on_event("device", "eviction")
        pool.write(slot, head)
        return slot


def _key(head: HeadRecord) -> HeadKey:
    return head.meta.task_id, head.meta.version


def _type_of(head: HeadRecord) -> HeadType:
    try:
        return HeadType(head.meta.head_type)
    except ValueError:
        raise HeadRejected(f"unknown head type {head.meta.head_type!r}") from None
