"""Serve on jemalloc: glibc's malloc lets a long-running inference server creep.

Every batch allocates activation tensors of a new shape (batch size x length),
and glibc's heaps fragment under that: a 10-minute soak grew RSS by 15% after
warm-up, with 2 arenas as much as with the default; the same soak on jemalloc
stayed within 1% (docs/benchmarks.md). An allocator can only be chosen at
process start, so `hra serve` re-executes itself once with jemalloc in
LD_PRELOAD (the pid stays the same).
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import sys
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class AllocatorUnavailable(RuntimeError):
    """HRA_ALLOCATOR=jemalloc, but the library is not installed."""


def find_jemalloc() -> str | None:
    """The library's soname when the dynamic loader can find it (Debian: libjemalloc2)."""
    return ctypes.util.find_library("jemalloc")


def env_for_allocator(
    environ: Mapping[str, str], choice: str, jemalloc: str | None
) -> dict[str, str] | None:
    """The environment to re-execute with, or None to go on as we are.

    choice: "system" (glibc), "jemalloc" (required) or "auto" (jemalloc when found).
    """
    preload = environ.get("LD_PRELOAD", "")
    if choice == "system" or "jemalloc" in preload:
        return None
    if jemalloc is None:
        if choice == "jemalloc":
            raise AllocatorUnavailable("HRA_ALLOCATOR=jemalloc but libjemalloc is not installed")
        logger.warning("jemalloc not found: serving on glibc malloc, expect slow RSS growth")
        return None
    return {**environ, "LD_PRELOAD": f"{jemalloc} {preload}".strip()}


def reexec_with_allocator(choice: str, argv: list[str]) -> None:
    """Replace this process by `python -m server.cli <argv>` on jemalloc; returns if unneeded."""
    env = env_for_allocator(os.environ, choice, find_jemalloc())
    if env is None:
        return
    logger.info("restarting on %s", env["LD_PRELOAD"])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "server.cli", *argv], env)
