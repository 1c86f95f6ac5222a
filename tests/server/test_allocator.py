from __future__ import annotations

from server.allocator import limit_malloc_arenas


def test_arena_limit_is_applied_on_glibc_and_zero_means_leave_alone():
    assert limit_malloc_arenas(0) is False
    assert limit_malloc_arenas(4) is True  # this machine's Python links glibc
