"""Which queued job a free local worker runs next: fair across tenants.

Contract: `add(job_id, tenant)` queues a job; `await next()` returns the next job to run
and marks its tenant served. Policy: the tenant served least recently (a tenant never
served first; ties: the one whose oldest job was queued first) gives its oldest job. So
one tenant's backlog of N jobs delays another tenant's single job by at most one job per
worker, not N: with jobs A1 A2 A3 then B1 queued while A1 runs, B1 runs second.
Admin jobs (tenant None) are one more tenant. Cost: O(tenants with queued jobs) a pick.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading

IDLE_POLL_S = 0.1  # an idle worker looks for work this often (add() may come from a thread)


class FairPending:
    def __init__(self) -> None:
        self._queues: dict[str | None, collections.deque[tuple[int, str]]] = {}
        self._served: dict[str | None, int] = {}  # tenant -> tick of its last pick
        self._order = itertools.count()  # queue order, and the served clock
        self._lock = threading.Lock()  # the restart's recovery adds from a thread

    def add(self, job_id: str, tenant: str | None) -> None:
        with self._lock:
            queue = self._queues.setdefault(tenant, collections.deque())
            queue.append((next(self._order), job_id))

    async def next(self) -> str:
        while (job_id := self._pick()) is None:
            await asyncio.sleep(IDLE_POLL_S)
        return job_id

    def _pick(self) -> str | None:
        with self._lock:
            if not self._queues:
                return None
            tenant = min(self._queues, key=lambda t: (self._served.get(t, -1), self._queues[t][0]))
            queue = self._queues[tenant]
            _, job_id = queue.popleft()
            if not queue:
                del self._queues[tenant]
            self._served[tenant] = next(self._order)
            return job_id

    def __len__(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())
