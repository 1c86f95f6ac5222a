"""Resident memory of a server whose store holds many heads (default 10,000).

Registers N random linear heads (valid for the shipped model) in a fresh store,
starts the real app, sends transcriptions spread over many distinct tasks, and
reads the process RSS at each stage. Memory must track the cache capacities
(host LRU, device slots), not the number of registered heads.

    .venv/bin/python -m load_tests.memory_many_heads --heads 10000 --distinct 2000
Prints a table and writes load_tests/results/memory-many-heads.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import torch
from tqdm import tqdm

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadMetadata, HeadRecord
from load_tests.report import write_report
from server.api.app import create_app
from server.config import REPO_ROOT, CacheSettings, Settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.models.checkpoint import head_spec, load_model

logger = logging.getLogger("load_tests.memory")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def register_heads(root: Path, count: int, settings: Settings) -> None:
    model, fp = load_model(settings.model_dir / "model.safetensors")
    spec = head_spec(model, fp)
    store = DiskStore(root)
    g = torch.Generator().manual_seed(0)
    for i in tqdm(range(count), desc="register heads"):
        tensor = torch.randn(spec.hidden_dim, spec.controller_dim, generator=g) * 0.01
        store.put(HeadRecord(HeadMetadata(f"tenant-{i:05d}", "linear", fp), {"V": tensor}))


async def drive(settings: Settings, tasks: list[str], clips: list[bytes], requests: int) -> dict:
    app = create_app(settings)
    stages = {}
    async with app.router.lifespan_context(app):
        service = app.state.runtime
        stages["started"] = rss_mib()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hra") as client:
            rng = random.Random(0)
            errors = 0
            for start in tqdm(range(0, requests, 32), desc="transcribe"):
                batch = [
                    client.post(
                        f"/v1/transcribe?task_id={rng.choice(tasks)}", content=rng.choice(clips)
                    )
                    for _ in range(32)
                ]
                errors += sum(r.status_code != 200 for r in await asyncio.gather(*batch))
                if start == requests // 2 // 32 * 32:
                    gc.collect()
                    stages["half_traffic"] = rss_mib()
        gc.collect()
        stages["after_traffic"] = rss_mib()
        stages["host_cache_heads"] = len(service.cache)
        stages["device_slots_resident"] = service.engine.slots.resident("linear")
        stages["errors"] = errors
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heads", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=2_000, help="distinct tasks requested")
    parser.add_argument("--requests", type=int, default=3_200)
    parser.add_argument("--host-heads", type=int, default=256)
    parser.add_argument("--device-slots", type=int, default=64)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests" / "results" / "memory-many-heads.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="hra-heads-"))
    try:
        base = Settings(
            disk_store_path=root,
            open_access=True,
            cache=CacheSettings(host_heads=args.host_heads, device_slots=args.device_slots),
        )
        began = time.time()
        register_heads(root, args.heads, base)
        register_s = time.time() - began
        clips = [Path(u.audio).read_bytes() for u in load_fsdd(base.fsdd_root, TEST_TAKES)[:64]]
        tasks = [f"tenant-{i:05d}" for i in range(min(args.distinct, args.heads))]
        stages = asyncio.run(drive(base, tasks, clips, args.requests))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    head_kib = 144 * 32 * 4 / 1024
    result = {
        "heads_registered": args.heads,
        "distinct_tasks_requested": len(tasks),
        "requests": args.requests,
        "host_heads_capacity": args.host_heads,
        "device_slots": args.device_slots,
        "register_seconds": round(register_s, 1),
        "head_kib": head_kib,
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in stages.items()},
    }
    write_report(result, args.out)


if __name__ == "__main__":
    main()
