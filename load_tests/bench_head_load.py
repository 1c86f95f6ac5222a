"""Head load latency by tier: p50 and p99 for the default head and a wav2vec2-base-sized one.

    cold_disk     DiskStore read + safetensors decode + validation (HostHeadCache miss)
    cold_redis    RedisStore GET + decode + validation (HostHeadCache miss)
    host_to_device  copy into a device slot pool slot (DeviceSlotPool miss)
    cache_hit     HostHeadCache hit (what a warm request pays)

    .venv/bin/python -m load_tests.bench_head_load [--redis-url redis://127.0.0.1:6379/0]
Writes load_tests/results/head-load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import torch

from adapters_store.cache import HostHeadCache
from adapters_store.disk_store import AsyncDiskStore
from adapters_store.families import make_head_spec
from adapters_store.head_format import HeadMetadata, HeadRecord, HeadSpec
from adapters_store.redis_store import RedisStore
from adapters_store.slot_pool import DeviceSlotPool
from load_tests.report import write_table
from server.config import REPO_ROOT

SIZES = {"default (D=144, d_c=32)": (144, 32, 6), "wav2vec2-base (D=768, d_c=64)": (768, 64, 12)}


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000


async def cold_loads(store, spec: HeadSpec, tasks: list[str]) -> list[float]:
    times = []
    for task in tasks:  # a fresh cache each time: every load is a miss
        cache = HostHeadCache(store, spec, capacity=4)
        began = time.perf_counter()
        await cache.resolve(task)
        times.append(time.perf_counter() - began)
    return times


async def measure(size: str, redis_url: str, count: int) -> list[dict]:
    hidden, ctrl, layers = SIZES[size]
    spec = make_head_spec("bench", hidden, ctrl, layers)
    g = torch.Generator().manual_seed(0)
    records = [
        HeadRecord(
            HeadMetadata(f"t{i}", "linear", "bench"), {"V": torch.randn(hidden, ctrl, generator=g)}
        )
        for i in range(count)
    ]
    tasks = [r.meta.task_id for r in records]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        disk = AsyncDiskStore(Path(tmp))
        for r in records:
            await disk.put(r)
        rows.append(("cold_disk", await cold_loads(disk, spec, tasks)))
    redis = RedisStore(redis_url, prefix=f"bench-{uuid.uuid4().hex[:8]}")
    for r in records:
        await redis.put(r)
    rows.append(("cold_redis", await cold_loads(redis, spec, tasks)))
    await redis.client.delete(*[k async for k in redis.client.scan_iter(f"{redis.prefix}:*")])
    await redis.close()

    pool = DeviceSlotPool(spec, capacity=8, device=torch.device("cpu"))
    promote = []
    for r in records:  # 8 slots, `count` heads: every placement is a miss
        began = time.perf_counter()
        pool.head_batch([r])
        promote.append(time.perf_counter() - began)
    rows.append(("host_to_device (cpu pool)", promote))

    with tempfile.TemporaryDirectory() as tmp:
        disk = AsyncDiskStore(Path(tmp))
        for r in records:
            await disk.put(r)
        cache = HostHeadCache(disk, spec, capacity=count)
        for task in tasks:  # warm: every head and current version cached
            await cache.resolve(task)
        hits = []
        for task in tasks * 5:
            began = time.perf_counter()
            await cache.resolve(task)
            hits.append(time.perf_counter() - began)
    rows.append(("cache_hit", hits))
    head_kib = hidden * ctrl * 4 / 1024
    result = []
    for tier, samples in rows:
        p50, p99 = percentiles(samples)
        result.append(
            {
                "head": size,
                "head_kib": round(head_kib, 1),
                "tier": tier,
                "n": len(samples),
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
            }
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests" / "results" / "head-load.json"
    )
    args = parser.parse_args()
    rows = []
    for size in SIZES:
        rows += asyncio.run(measure(size, args.redis_url, args.count))
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
