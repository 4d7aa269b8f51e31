"""visionzoo.allocator: glibc's malloc keeps freed memory, or hands it back, as asked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from visionzoo import allocator

# A child process, since the setting belongs to the whole process. Each round mallocs 40 blocks of 2 MiB
# (80 MiB: more than glibc's dynamic trim threshold can reach), writes them and frees them, and counts the page
# faults; raw malloc so that nothing else allocates in between. One block of 48 MiB is beyond any threshold glibc
# takes (32 MiB at most): it is kept only because no block gets a mapping of its own.
_CHILD = textwrap.dedent(
    """
    import ctypes, json, resource
    from visionzoo.allocator import _glibc, keep_freed_memory

    libc = _glibc()
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

    def round_faults(count=40, size=2 << 20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(size) for _ in range(count)]
        for block in blocks:
            ctypes.memset(block, 1, size)
        for block in reversed(blocks):
            libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    out = {"default": [round_faults() for _ in range(3)], "keep_accepted": keep_freed_memory()}
    out["keep"] = [round_faults() for _ in range(3)]  # the first round still grows the heap
    out["keep_big"] = [round_faults(count=1, size=48 << 20) for _ in range(3)]
    out["release_accepted"] = keep_freed_memory(False)
    out["released"] = [round_faults() for _ in range(3)]
    print(json.dumps(out))
    """
)


def _glibc_only() -> None:
    if allocator._glibc() is None:
        pytest.skip("the C library is not glibc: keep_freed_memory has nothing to set")


def test_keeping_freed_memory_spares_the_page_faults_and_releasing_brings_them_back() -> None:
    _glibc_only()
    result = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    faults = json.loads(result.stdout.strip().splitlines()[-1])
    pages = 80 * (1 << 20) // 4096  # 20480 pages of 4 KiB per round
    assert faults["keep_accepted"] and faults["release_accepted"]
    assert min(faults["default"]) > pages // 2, faults  # glibc hands the 80 MiB back after every round
    assert max(faults["keep"][1:]) < pages // 20, faults  # kept: the next round reuses it in place
    assert max(faults["keep_big"][1:]) < pages // 20, faults
    assert min(faults["released"]) > pages // 2, faults


def test_without_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
    assert allocator.keep_freed_memory(False) is False
