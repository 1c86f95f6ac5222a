"""A real `hra serve` process on a free port, for load tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from server.config import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(heads: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """Keyless server over the DiskStore `heads`; extra HRA_* settings as keyword args."""
    port = free_port()
    env = dict(
        os.environ,
        HRA_PORT=str(port),
        HRA_OPEN_ACCESS="true",
        HRA_DISK_STORE_PATH=str(heads),
    )
    env.update(settings)  # may override the defaults above (keys instead of open access)
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        env=env,
        cwd=REPO_ROOT,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")
