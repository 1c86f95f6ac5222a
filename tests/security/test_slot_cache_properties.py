"""Property tests of the head tiers: no tenant is ever served another's weights or an old head.

Device slot pool, over random sequences of placements, placements that fail
(a head above the pool's rank, a head whose copy fails mid-batch) and the
evictions they cause:
    - the index -> key table and the free list partition the slots;
    - no key is mapped twice, and the key -> slot index agrees with the table;
    - a mapped slot holds exactly the head written into it (zero-padded to the
      pool's rank), and every batch reads each utterance's own head.
Host head cache over a real DiskStore, over random interleavings of puts,
rollbacks, invalidations (one task and "*") and concurrent resolves whose
store reads answer in any order:
    - a resolve returns a version that was current at some moment while it
      ran (never one an invalidation before its start had superseded), with
      that version's own tensors;
    - the cache stays within its byte bound.
"""

from __future__ import annotations

import asyncio
import tempfile
import zlib
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters_store.cache import HostHeadCache
from adapters_store.disk_store import AsyncDiskStore
from adapters_store.errors import HeadRejected
from adapters_store.families import FAMILIES, ModelDims, make_head_spec
from adapters_store.head_format import HeadMetadata, HeadRecord, HeadType
from adapters_store.slot_pool import DeviceSlotPool, SlotPoolExhausted

DIMS = ModelDims(hidden_dim=6, controller_dim=4, num_layers=2)
MAX_RANKS = {"ffn": 4, "residual": 3}
SPEC = make_head_spec("fp", 6, 4, 2, max_ranks=MAX_RANKS)
CAPACITY = 3
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- device slot pool ---------------------------------------------------------


@dataclass(frozen=True)
class HeadId:
    task: str
    version: int

    @property
    def seed(self) -> int:
        return zlib.crc32(f"{self.task}/{self.version}".encode())

    @property
    def kind(self) -> HeadType:
        return list(HeadType)[self.seed % 3]

    @property
    def rank(self) -> int:
        return 0 if self.kind == HeadType.LINEAR else 1 + self.seed % MAX_RANKS[self.kind]


def _head(head: HeadId, rank: int | None = None, device: str = "cpu") -> HeadRecord:
    """The one head (task, version) names: versions are immutable."""
    rank = head.rank if rank is None else rank
    g = torch.Generator().manual_seed(head.seed)
    shapes = FAMILIES[head.kind].shapes(DIMS, rank)
    tensors = {n: torch.randn(s, generator=g).to(device) for n, s in shapes.items()}
    meta = HeadMetadata(head.task, head.kind.value, "fp", version=head.version, rank=rank)
    return HeadRecord(meta, tensors)


UNIVERSE = [HeadId(f"tenant{t}", v) for t in range(5) for v in (1, 2)]
HEADS = {(h.task, h.version): _head(h) for h in UNIVERSE}
ranked = [h for h in UNIVERSE if h.kind != HeadType.LINEAR]


def _padded(record: HeadRecord) -> dict[str, torch.Tensor]:
    kind = HeadType(record.meta.head_type)
    return FAMILIES[kind].padded(record.tensors, SPEC.max_rank(kind), DIMS)


def _check_pool(pool: DeviceSlotPool) -> None:
    for kind in HeadType:
        table, free = pool.slot_table(kind), pool.free_slots(kind)
        mapped = [i for i, key in enumerate(table) if key is not None]
        assert sorted(mapped + free) == list(range(CAPACITY)), (table, free)
        assert len(free) == len(set(free))
        keys = [table[i] for i in mapped]
        assert len(keys) == len(set(keys)), f"a key is mapped twice: {table}"
        assert pool.resident(kind) == len(keys)
        weights = pool.weights(kind)
        for i in mapped:
            for name, expected in _padded(HEADS[table[i]]).items():
                assert torch.equal(weights[name][i], expected), f"slot {i} != {table[i]}"


def _check_batch(batch, records: list[HeadRecord | None]) -> None:
    for b, record in enumerate(records):
        for kind, part in batch.families.items():
            slot = int(part.slots[b])
            if record is None or HeadType(record.meta.head_type) != kind:
                assert slot == -1
                continue
            for name, expected in _padded(record).items():
                assert torch.equal(part.pools[name][slot], expected), f"utterance {b}"


head_ids = st.sampled_from(UNIVERSE)
batches = st.lists(st.one_of(st.none(), head_ids), min_size=1, max_size=5)
pool_ops = st.lists(
    st.one_of(
        st.tuples(st.just("place"), batches),
        st.tuples(st.just("over_rank"), batches, st.sampled_from(ranked), st.integers(0, 5)),
        st.tuples(st.just("failed_copy"), batches, head_ids, st.integers(0, 5)),
    ),
    max_size=30,
)


@PROPERTY
@given(pool_ops)
def test_a_slot_always_holds_exactly_the_head_mapped_to_it(ops):
    pool = DeviceSlotPool(SPEC, CAPACITY, torch.device("cpu"))
    for op in ops:
        records = [None if h is None else HEADS[(h.task, h.version)] for h in op[1]]
        before = {k: (pool.slot_table(k), pool.free_slots(k)) for k in HeadType}
        if op[0] == "over_rank":  # refused before any slot changes
            bad = _head(op[2], rank=MAX_RANKS[op[2].kind] + 1).with_meta(task_id="over-rank")
            records.insert(op[3] % (len(records) + 1), bad)
            with pytest.raises(HeadRejected):
                pool.head_batch(records)
            assert before == {k: (pool.slot_table(k), pool.free_slots(k)) for k in HeadType}
        elif op[0] == "failed_copy":  # fails mid-batch, after earlier heads were placed
            bad = _head(HeadId("broken", op[2].version + 10 * op[3]), device="meta")
            records.insert(op[3] % (len(records) + 1), bad)
            with pytest.raises((NotImplementedError, SlotPoolExhausted)):
                pool.head_batch(records)
            bad_key = (bad.meta.task_id, bad.meta.version)
            assert all(bad_key not in pool.slot_table(k) for k in HeadType)
        else:
            try:
                batch = pool.head_batch(records)
            except SlotPoolExhausted:  # more distinct heads of a family than slots
                assert before == {k: (pool.slot_table(k), pool.free_slots(k)) for k in HeadType}
            else:
                _check_batch(batch, records)
        _check_pool(pool)


# --- host head cache ----------------------------------------------------------

CACHE_SPEC = make_head_spec("fp", hidden_dim=10, controller_dim=10, num_layers=1)
HEAD_BYTES = 10 * 10 * 4
TASKS = ("a", "b")


class GatedStore(AsyncDiskStore):
    """A real DiskStore whose current-version answers the test releases, in any order.

    The version is read when asked and answered later: a slow store's window,
    during which the task may change and the cache may be told so.
    """

    def __init__(self, root) -> None:
        super().__init__(root)
        self.pending: list[asyncio.Future[None]] = []
        self.open = False

    async def current_version(self, task_id: str) -> int:
        version = self.disk.current_version(task_id)  # read now, on the loop: deterministic
        if not self.open:
            gate = asyncio.get_running_loop().create_future()
            self.pending.append(gate)
            await gate
        return version

    def release(self, index: int) -> None:
        if self.pending:
            gate = self.pending.pop(index % len(self.pending))
            if not gate.done():
                gate.set_result(None)


cache_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(TASKS)),
        st.tuples(st.just("rollback"), st.sampled_from(TASKS), st.integers(0, 10)),
        st.tuples(st.just("invalidate"), st.sampled_from(TASKS)),
        st.tuples(st.just("invalidate_all")),
        st.tuples(st.just("resolve"), st.sampled_from(TASKS)),
        st.tuples(st.just("release"), st.integers(0, 10)),
        st.tuples(st.just("run")),
    ),
    max_size=40,
)


async def _interleave(root: str, ops: list[tuple]) -> None:
    store = GatedStore(root)
    cache = HostHeadCache(store, CACHE_SPEC, capacity=3, max_bytes=2 * HEAD_BYTES + 100)
    clock = 0
    history: dict[str, list[tuple[int, int]]] = {t: [] for t in TASKS}  # (clock, current)
    values: dict[tuple[str, int], float] = {}
    resolves: list[tuple[str, int, asyncio.Task, list[int]]] = []

    def change(task: str, version: int) -> None:
        history[task].append((clock, version))
        cache.invalidate(task)  # what the store's change feed does, right after the change

    def put(task: str) -> None:
        value = float(len(values) + 1)
        record = HeadRecord(HeadMetadata(task, "linear", "fp"), {"V": torch.full((10, 10), value)})
        stored = store.disk.put(record)  # synchronous: change and invalidation are one step
        values[(task, stored.meta.version)] = value
        change(task, stored.meta.version)

    for task in TASKS:
        put(task)
    for op in ops:
        clock += 1
        if op[0] == "put":
            put(op[1])
        elif op[0] == "rollback":
            versions = sorted(v for t, v in values if t == op[1])
            version = versions[op[2] % len(versions)]
            store.disk.set_current(op[1], version)
            change(op[1], version)
        elif op[0] == "invalidate":
            cache.invalidate(op[1])
        elif op[0] == "invalidate_all":
            cache.invalidate("*")
        elif op[0] == "resolve":
            ended: list[int] = []
            job = asyncio.create_task(cache.resolve(op[1]))
            # The clock when the resolve ends, not when it began: late binding on purpose.
            job.add_done_callback(lambda _, ended=ended: ended.append(clock))  # noqa: B023
            resolves.append((op[1], clock, job, ended))
        elif op[0] == "release":
            store.release(op[1])
        await asyncio.sleep(0.002 if op[0] == "run" else 0)
        assert cache.bytes <= cache.max_bytes and len(cache) <= 3
    clock += 1
    while not all(job.done() for *_, job, _ in resolves):
        store.release(0)
        await asyncio.sleep(0.001)
    await asyncio.sleep(0)  # done callbacks run one loop turn after their task
    for task, began, job, ended in resolves:
        record = job.result()
        key = (task, record.meta.version)
        assert record.tensors["V"][0, 0] == values[key], "a version served another's tensors"
        current_then = [v for c, v in history[task] if c <= began][-1:]
        during = [v for c, v in history[task] if began < c <= ended[0]]
        assert record.meta.version in current_then + during, (
            f"resolve of {task} during clock {began}..{ended[0]} served v{record.meta.version}; "
            f"history {history[task]}"
        )
    store.open = True
    for task in TASKS:  # once things settle, every task serves its current version
        assert (await cache.resolve(task)).meta.version == history[task][-1][1]


@PROPERTY
@given(cache_ops)
def test_the_host_cache_never_serves_a_version_an_invalidation_superseded(ops):
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_interleave(root, ops))


def test_the_cache_property_sees_the_lost_invalidation_interleaving():
    """The defect's own interleaving, as a fixed example of the property above."""
    ops = [("resolve", "a"), ("put", "a"), ("release", 0), ("run",), ("resolve", "a")]
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_interleave(root, ops))
