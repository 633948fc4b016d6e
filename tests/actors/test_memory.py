"""Idle memory release: malloc_trim runs when the runtime goes idle, rate-limited."""


import pytest

from actors import memory


@pytest.mark.skipif(memory._trim is None, reason="needs glibc's malloc_trim")
def test_release_is_rate_limited_unless_forced():
    assert memory.release_free_memory(force=True) is True
    assert memory.release_free_memory() is False  # within MIN_INTERVAL of the last trim
    assert memory.release_free_memory(force=True) is True


@pytest.mark.skipif(memory._trim is None, reason="needs glibc's malloc_trim")
def test_release_returns_freed_heap_to_the_os():
    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4

    memory.release_free_memory(force=True)
    # Many small blocks (below glibc's mmap threshold), then freed: they stay in the heap.
    blocks = [bytearray(2000) for _ in range(100_000)]
    pin = bytearray(2000)  # allocated last: the heap's top stays in use, so free() alone cannot shrink it
    grown = rss_kb()
    del blocks
    memory.release_free_memory(force=True)
    assert rss_kb() < grown - 100_000  # well over 100 MB of the ~200 MB went back
    del pin


def test_freeze_startup_objects_takes_what_is_held_out_of_collection() -> None:
    import gc

    from actors.memory import freeze_startup_objects
    held = [object() for _ in range(10)] + [[] for _ in range(10)]
    try:
        n = freeze_startup_objects()
        assert n == gc.get_freeze_count() and n >= len(held)
        assert all(not any(o is x for x in gc.get_objects()) for o in held[10:])
    finally:
        gc.unfreeze()   # the rest of the test session collects as usual
