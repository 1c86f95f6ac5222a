"""Both stores against a reference model, over random sequences of lifecycle calls.

Hypothesis drives put / rollback / delete by two tenants and an admin (with and
without keeping the owner) on two ids, under small quotas, and after every step
compares the store with a dict model of what issue 12 item 3 promises: versions
never reused, foreign tasks answer UnknownTask, the owner follows the current
version, quotas bind tenants only.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from adapters_store.base import Quotas
from adapters_store.disk_store import DiskStore
from adapters_store.errors import QuotaExceeded, UnknownTask
from adapters_store.head_format import HeadMetadata, HeadRecord, decode_head
from adapters_store.redis_store import RedisStore

TASKS = st.sampled_from(["x", "y"])
WHO = st.sampled_from(["acme", "globex", None])  # None: an admin
OWNERS = st.sampled_from(["acme", "globex", None])
QUOTAS = Quotas(max_tasks_per_tenant=1, max_versions_per_task=3, max_bytes_per_tenant=1 << 30)


@dataclass
class Task:
    owner: str | None
    current: int
    versions: dict[int, str | None] = field(default_factory=dict)  # version -> its owner


class SyncRedis:
    """RedisStore calls from synchronous code: a fresh client per call, own event loop."""

    def __init__(self, url: str) -> None:
        self.url, self.prefix = url, f"model-{uuid.uuid4().hex[:8]}"

    def __getattr__(self, name):
        def call(*args, **kwargs):
            async def run():
                store = RedisStore(self.url, self.prefix, quotas=QUOTAS)
                try:
                    return await getattr(store, name)(*args, **kwargs)
                finally:
                    await store.close()

            return asyncio.run(run())

        return call

    def get(self, task_id, version=None):
        return decode_head(self.get_bytes(task_id, version))

    def task_ids(self, owner=None):
        return self.list_tasks(0, 1000, owner)[0]


class LifecycleModel(RuleBasedStateMachine):
    def __init__(self, make_store) -> None:
        super().__init__()
        self.store = make_store()
        self.tasks: dict[str, Task] = {}
        self.last: dict[str, int] = {}

    def _expect(self, error, call) -> None:
        if error is None:
            call()
        else:
            with pytest.raises(error):
                call()

    def _owned_by(self, tenant: str) -> int:
        return sum(t.owner == tenant for t in self.tasks.values())

    @rule(task=TASKS, who=WHO, file_owner=OWNERS, keep=st.booleans())
    def put(self, task, who, file_owner, keep):
        record = HeadRecord(
            HeadMetadata(task, "linear", "fp", owner=file_owner), {"V": torch.zeros(2, 2)}
        )
        known = self.tasks.get(task)
        error = None
        if known and who is not None and known.owner != who:
            error = UnknownTask
        elif who is not None and (
            self._owned_by(who) + (0 if known else 1) > QUOTAS.max_tasks_per_tenant
            or (len(known.versions) if known else 0) + 1 > QUOTAS.max_versions_per_task
        ):
            error = QuotaExceeded
        if error:
            return self._expect(error, lambda: self.store.put(record, who, keep))
        stored = self.store.put(record, who, keep)
        owner = who if who else (known.owner if keep and known else file_owner)
        version = self.last.get(task, 0) + 1
        assert stored.meta.version == version and stored.meta.owner == owner
        self.last[task] = version
        entry = self.tasks.setdefault(task, Task(owner, version))
        entry.owner, entry.current = owner, version
        entry.versions[version] = owner

    @rule(task=TASKS, who=WHO, version=st.integers(1, 6))
    def rollback(self, task, who, version):
        known = self.tasks.get(task)
        if (
            known is None
            or (who is not None and known.owner != who)
            or version not in known.versions
            or (who is not None and known.versions[version] != who)
        ):
            return self._expect(UnknownTask, lambda: self.store.set_current(task, version, who))
        self.store.set_current(task, version, who)
        known.current, known.owner = version, known.versions[version]

    @rule(task=TASKS, who=WHO)
    def delete(self, task, who):
        known = self.tasks.get(task)
        if known is None or (who is not None and known.owner != who):
            return self._expect(UnknownTask, lambda: self.store.delete(task, who))
        self.store.delete(task, who)
        del self.tasks[task]

    @invariant()
    def store_matches_the_model(self):
        assert self.store.task_ids() == sorted(self.tasks)
        for tenant in ("acme", "globex"):
            expected = sorted(t for t, k in self.tasks.items() if k.owner == tenant)
            assert self.store.task_ids(tenant) == expected
        for task, known in self.tasks.items():
            assert self.store.versions(task) == sorted(known.versions)
            assert self.store.current_version(task) == known.current
            assert self.store.get(task).meta.owner == known.owner


RUN = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_disk_store_follows_the_lifecycle_model(tmp_path):
    def make():
        return DiskStore(tmp_path / uuid.uuid4().hex[:8], QUOTAS)

    run_state_machine_as_test(lambda: LifecycleModel(make), settings=RUN)


def test_redis_store_follows_the_lifecycle_model(redis_server):
    run_state_machine_as_test(
        lambda: LifecycleModel(lambda: SyncRedis(redis_server.url)), settings=RUN
    )
