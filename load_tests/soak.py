"""Soak: mixed load with hot swaps against a real server process, for minutes.

Starts `hra serve` (uvicorn) on a free port with a private copy of the default
heads, sends transcriptions from --users concurrent clients over Zipf-popular
tasks, re-registers a head every --swap-every seconds, and samples the
server's RSS. Reports RSS at start and end, errors, and latency drift (p50/p99
of the first and the last minute).

    .venv/bin/python -m load_tests.soak --minutes 10
Writes load_tests/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from load_tests.report import write_report
from load_tests.server_process import start_server
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def allocator(pid: int) -> str:
    """Which malloc the server process really runs on (after its re-exec)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "jemalloc" if "libjemalloc" in maps else "system"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(url: str, pid: int, minutes: float, users: int, swap_every: float) -> dict:
    clips = [Path(u.audio).read_bytes() for u in load_fsdd(get_settings().fsdd_root, TEST_TAKES)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        tasks = (await client.get("/v1/tasks")).json()["tasks"]
        weights = [1 / (rank + 1) for rank in range(len(tasks))]  # Zipf, s = 1
        heads = {t: (await client.get(f"/v1/tasks/{t}/head")).content for t in tasks[:3]}
        end = time.monotonic() + minutes * 60
        began = time.monotonic()
        samples: list[tuple[float, float, int]] = []  # (t, latency, status)
        rss = [(0.0, rss_mib(pid))]
        swaps = 0

        async def user(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < end:
                task = rng.choices(tasks, weights)[0]
                t0 = time.monotonic()
                r = await client.post(f"/v1/transcribe?task_id={task}", content=rng.choice(clips))
                samples.append((t0 - began, time.monotonic() - t0, r.status_code))

        async def swapper() -> None:
            nonlocal swaps
            while time.monotonic() < end:
                await asyncio.sleep(swap_every)
                task = random.choice(list(heads))
                r = await client.put(f"/v1/tasks/{task}", files={"file": ("h", heads[task])})
                swaps += r.status_code == 200

        async def sampler() -> None:
            while time.monotonic() < end:
                await asyncio.sleep(5)
                rss.append((time.monotonic() - began, rss_mib(pid)))

        await asyncio.gather(*[user(i) for i in range(users)], swapper(), sampler())
    duration = time.monotonic() - began
    first = [lat for t, lat, _ in samples if t < 60]
    last = [lat for t, lat, _ in samples if t > duration - 60]
    errors = sum(status != 200 for _, _, status in samples)
    # RSS "start" after the first minute of warm-up, when caches have filled.
    warm = [m for t, m in rss if t >= min(60, duration / 2)] or [rss[-1][1]]
    return {
        "minutes": round(duration / 60, 2),
        "users": users,
        "allocator": allocator(pid),
        "requests": len(samples),
        "errors": errors,
        "swaps": swaps,
        "rss_start_mib": round(rss[0][1], 1),
        "rss_after_warmup_mib": round(warm[0], 1),
        "rss_end_mib": round(rss[-1][1], 1),
        "rss_growth_after_warmup_pct": round(100 * (rss[-1][1] - warm[0]) / warm[0], 2),
        "p50_first_min_ms": round(1000 * statistics.median(first), 1) if first else None,
        "p50_last_min_ms": round(1000 * statistics.median(last), 1) if last else None,
        "p99_first_min_ms": round(1000 * percentile(first, 0.99), 1),
        "p99_last_min_ms": round(1000 * percentile(last, 0.99), 1),
        "throughput_rps": round(len(samples) / duration, 2),
        "rss_series_mib": [[round(t), round(m, 1)] for t, m in rss[::6]],  # every 30 s
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--swap-every", type=float, default=5.0)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "load_tests" / "results" / "soak.json"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hra-soak-"))
    shutil.copytree(get_settings().model_dir / "heads", tmp / "heads")
    process, url = start_server(tmp / "heads")
    try:
        result = asyncio.run(run(url, process.pid, args.minutes, args.users, args.swap_every))
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(result, args.out)


if __name__ == "__main__":
    main()
