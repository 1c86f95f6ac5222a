"""Bound glibc's malloc arenas for a long-running server process.

glibc gives busy threads their own heap arenas (up to 8 per core) and rarely
returns their freed pages. The server's threads (event loop, engine, audio
decoding pool) each allocate variable-size activation and audio buffers, and
RSS crept up by 15% over a 10-minute soak; with 2 arenas it plateaued within
90 s (docs/benchmarks.md). mallopt(M_ARENA_MAX) is the in-process equivalent
of MALLOC_ARENA_MAX and must run before the worker threads start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)
M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """True if set; False where the C library is not glibc (nothing to do)."""
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        ok = False
    logger.info("malloc arenas limited to %d: %s", arenas, "yes" if ok else "not glibc, skipped")
    return ok
