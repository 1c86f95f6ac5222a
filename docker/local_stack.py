"""The compose stack without Docker: a real redis-server and two uvicorn replicas.

    python docker/local_stack.py                      # redis :6390, replicas :8001 :8002
    python docker/local_stack.py --redis-port 7000 --ports 9001 9002 --ready-file /tmp/up

Seeds Redis with the embedded default heads (once; existing tasks are kept),
starts the replicas with HRA_STORE=redis, waits until both answer /readyz,
then runs until interrupted and stops everything it started. `make stack`
runs this; the cross-replica tests run against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters_store.redis_store import RedisStore  # noqa: E402
from adapters_store.seeding import seed_store  # noqa: E402


async def seed(url: str, prefix: str, heads: Path) -> int:
    """Copy every default head into Redis unless the same head is there already."""
    store = RedisStore(url, prefix)
    try:
        report = await seed_store(store, heads)
    finally:
        await store.close()
    return len(report.added) + len(report.updated)


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--ports", type=int, nargs="+", default=[8001, 8002])
    parser.add_argument("--prefix", default="hra")
    parser.add_argument("--data-dir", type=Path, default=None, help="Redis AOF folder")
    parser.add_argument("--ready-file", type=Path, help="written once every replica is ready")
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hra-stack-"))
    url = f"redis://127.0.0.1:{args.redis_port}/0"
    children: list[subprocess.Popen] = [
        subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(args.redis_port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--save",
                "",
                "--dir",
                str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
        )
    ]
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        time.sleep(0.3)
        added = asyncio.run(seed(url, args.prefix, REPO / "models" / "default" / "heads"))
        print(f"redis :{args.redis_port} ({data_dir}), seeded {added} heads", flush=True)
        for port in args.ports:
            env = dict(
                os.environ,
                HRA_STORE="redis",
                HRA_REDIS_URL=url,
                HRA_PORT=str(port),
                HRA_REDIS_PREFIX=args.prefix,
                HRA_HOST="127.0.0.1",
            )
            children.append(
                subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env, cwd=REPO)
            )
        for port in args.ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        print(
            "replicas ready: " + " ".join(f"http://127.0.0.1:{p}" for p in args.ports), flush=True
        )
        if args.ready_file:
            args.ready_file.write_text("ready\n")
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
