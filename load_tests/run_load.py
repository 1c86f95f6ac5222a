"""Load scenarios against a real server process, driven by Locust in headless mode.

    .venv/bin/python -m load_tests.run_load steady --tasks 100 --users 32 --duration 60
    .venv/bin/python -m load_tests.run_load cold-start --tasks 10000 --users 32
    .venv/bin/python -m load_tests.run_load hot-swap --tasks 100 --users 32
    .venv/bin/python -m load_tests.run_load batching          # max_batch_size 1 vs default, x3
    .venv/bin/python -m load_tests.run_load zipf-scale        # 1 task vs 10,000 tasks

steady      Zipf(1) task popularity over N tasks, real FSDD speech cut to 1-3 s clips
cold-start  every request a task the server has not served yet (uniform over N)
hot-swap    steady, plus one user re-registering popular heads every 2 s
Each writes load_tests/results/load-<scenario>.json: throughput, p50/p95/p99, errors.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from adapters_store.disk_store import DiskStore
from adapters_store.head_format import HeadMetadata, HeadRecord
from load_tests.report import write_table
from load_tests.server_process import start_server
from server.config import REPO_ROOT, get_settings
from server.data.fsdd import TEST_TAKES, load_fsdd
from server.models.checkpoint import load_model

RESULTS = REPO_ROOT / "load_tests" / "results"


def make_clips(folder: Path, count: int = 48, seed: int = 0) -> None:
    """FSDD test recordings joined into 1-3 s clips."""
    rng = np.random.default_rng(seed)
    waves = [
        sf.read(u.audio, dtype="float32")[0]
        for u in load_fsdd(get_settings().fsdd_root, TEST_TAKES)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = rng.uniform(1.0, 3.0) * 8000
        parts = []
        while sum(len(p) for p in parts) < target:
            parts.append(waves[rng.integers(len(waves))])
        clip = np.concatenate(parts)[: int(target)]
        sf.write(folder / f"{i:03d}.wav", clip, 8000, subtype="PCM_16")


def make_store(folder: Path, count: int) -> list[str]:
    """The default heads, plus random valid linear heads up to `count` tasks."""
    shutil.copytree(get_settings().model_dir / "heads", folder)
    store = DiskStore(folder)
    tasks = store.task_ids()
    model, fp = load_model(get_settings().model_dir / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    shape = (model.backbone.hidden_dim, model.controller.dim)
    for i in tqdm(range(max(0, count - len(tasks))), desc="register heads"):
        task_id = f"tenant-{i:05d}"
        store.put(
            HeadRecord(
                HeadMetadata(task_id, "linear", fp), {"V": torch.randn(shape, generator=g) * 0.01}
            )
        )
        tasks.append(task_id)
    return tasks[:count]


def run_locust(url: str, env: dict, users: int, duration_s: int, csv_prefix: Path) -> dict:
    # Locust exits non-zero when any request failed; the failures are in the stats.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO_ROOT / "load_tests" / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{duration_s}s",
            "--host",
            url,
            "--csv",
            str(csv_prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env={**os.environ, **env},
        check=False,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not Path(f"{csv_prefix}_stats.csv").exists():
        raise RuntimeError(f"locust wrote no stats (exit {done.returncode}): {done.stderr[-2000:]}")
    rows = list(csv.DictReader(open(f"{csv_prefix}_stats.csv")))
    row = next(r for r in rows if r["Name"] == "/v1/transcribe")
    requests = int(row["Request Count"])
    return {
        "requests": requests,
        "failures": int(row["Failure Count"]),
        "error_rate": round(int(row["Failure Count"]) / max(1, requests), 4),
        "throughput_rps": round(float(row["Requests/s"]), 2),
        "p50_ms": float(row["50%"]),
        "p95_ms": float(row["95%"]),
        "p99_ms": float(row["99%"]),
    }


def scenario(
    name: str, tasks: int, users: int, duration: int, batch: int | None, work: Path
) -> dict:
    clips_dir = work / "clips"
    if not clips_dir.exists():
        make_clips(clips_dir)
    store = work / f"store-{tasks}"
    task_ids = make_store(store, tasks) if not store.exists() else DiskStore(store).task_ids()
    task_ids = task_ids[:tasks]
    (work / "tasks.txt").write_text("\n".join(task_ids))
    env = {
        "HRA_LOAD_CLIPS": str(clips_dir),
        "HRA_LOAD_TASKS": f"@{work / 'tasks.txt'}",
        "HRA_LOAD_ZIPF": "0" if name == "cold-start" else "1",
        "HRA_LOAD_SWAP_S": "2" if name == "hot-swap" else "0",
    }
    extra = {"HRA_BATCH__MAX_BATCH_SIZE": str(batch)} if batch else {}
    process, url = start_server(store, HRA_CACHE__HOST_HEADS="1024", **extra)
    try:
        stats = run_locust(url, env, users, duration, work / f"{name}-{tasks}-{users}-{batch}")
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        process.terminate()
        process.wait(30)
    forward = [line for line in metrics.splitlines() if line.startswith("hra_batch_size_")]
    sums = {line.split()[0]: float(line.split()[1]) for line in forward if " " in line}
    mean_batch = sums.get("hra_batch_size_sum", 0) / max(1.0, sums.get("hra_batch_size_count", 0))
    return {
        "scenario": name,
        "tasks": tasks,
        "users": users,
        "duration_s": duration,
        "max_batch_size": batch or 32,
        "mean_batch_size": round(mean_batch, 2),
        **stats,
    }


def median_runs(runs: list[dict], key) -> list[dict]:
    """Per configuration, the run of median throughput, with every run's throughput beside it."""
    groups: dict = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    kept = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r["throughput_rps"])
        kept.append(
            {**ordered[len(ordered) // 2], "throughput_runs": [r["throughput_rps"] for r in group]}
        )
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "scenario", choices=["steady", "cold-start", "hot-swap", "batching", "zipf-scale"]
    )
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--duration", type=int, default=60, help="seconds per run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="batching: runs per configuration (median kept)"
    )
    parser.add_argument("--out", type=Path, help="default load_tests/results/load-<scenario>.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hra-load-") as tmp:
        work = Path(tmp)
        if args.scenario == "batching":
            runs = [  # configurations take turns, so machine noise hits all of them alike
                scenario("steady", 13, users, args.duration, batch, work)
                for _ in range(args.repeats)
                for users in (1, 8, 32)
                for batch in (1, None)
            ]
            runs = median_runs(runs, key=lambda r: (r["users"], r["max_batch_size"]))
        elif args.scenario == "zipf-scale":
            runs = [
                scenario("steady", n, args.users, args.duration, None, work) for n in (1, 10_000)
            ]
        else:
            runs = [scenario(args.scenario, args.tasks, args.users, args.duration, None, work)]
    write_table(runs, args.out or RESULTS / f"load-{args.scenario}.json")


if __name__ == "__main__":
    main()
