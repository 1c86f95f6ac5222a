import pytest

from server.allocator import AllocatorUnavailable, env_for_allocator

SO = "libjemalloc.so.2"


def test_auto_preloads_jemalloc_and_keeps_the_rest_of_the_environment():
    env = env_for_allocator({"PATH": "/bin", "LD_PRELOAD": "libx.so"}, "auto", SO)
    assert env == {"PATH": "/bin", "LD_PRELOAD": f"{SO} libx.so"}


def test_no_reexec_when_already_on_jemalloc_or_system_chosen():
    assert env_for_allocator({"LD_PRELOAD": SO}, "auto", SO) is None  # no exec loop
    assert env_for_allocator({}, "system", SO) is None


def test_missing_jemalloc_is_fatal_only_when_required():
    assert env_for_allocator({}, "auto", None) is None
    with pytest.raises(AllocatorUnavailable):
        env_for_allocator({}, "jemalloc", None)
