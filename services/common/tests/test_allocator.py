"""glibc malloc settings for Triton (glioscope_common.allocator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from glioscope_common.allocator import TRITON_MALLOC_TUNABLES, tunables_string, with_malloc_tunables


def test_the_tunables_are_added_and_an_operators_own_value_wins() -> None:
    assert with_malloc_tunables({}, TRITON_MALLOC_TUNABLES)["GLIBC_TUNABLES"] == tunables_string(TRITON_MALLOC_TUNABLES)
    env = with_malloc_tunables({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0:glibc.pthread.rseq=0", "HOME": "/h"},
                               TRITON_MALLOC_TUNABLES)
    items = env["GLIBC_TUNABLES"].split(":")
    assert items[:2] == ["glibc.malloc.hugetlb=0", "glibc.pthread.rseq=0"]
    assert "glibc.malloc.hugetlb=1" not in items
    assert "glibc.malloc.mmap_max=0" in items and env["HOME"] == "/h"
    assert with_malloc_tunables(env, TRITON_MALLOC_TUNABLES) == env  # applying twice changes nothing


# Allocates and frees a 64 MiB block (above glibc's largest mmap threshold, as a patch's tensors),
# and reports the process's resident memory before, while holding it, and after freeing it.
_PROBE = r"""
import ctypes, json
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss_kib()
size = 64 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)
held = rss_kib()
libc.free(block)
print(json.dumps({"before": before, "held": held, "after": rss_kib()}))
"""


def _probe(env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_glibc_keeps_a_freed_large_block_for_reuse_only_with_the_tunables() -> None:
    """The behaviour the settings are for: without them a freed 64 MiB block goes back to the
    system (the next patch faults its pages in again); with them it stays in the heap."""
    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    without = _probe(plain)
    assert without["held"] - without["before"] > 60 << 10
    assert without["held"] - without["after"] > 60 << 10  # returned on free
    tuned = _probe(with_malloc_tunables(plain, TRITON_MALLOC_TUNABLES))
    assert tuned["held"] - tuned["before"] > 60 << 10
    assert tuned["held"] - tuned["after"] < 4 << 10  # kept


def test_triton_is_started_with_the_tunables_and_the_worker_without(tmp_path: Path) -> None:
    from glioscope_common.dev.triton import LocalTriton
    from glioscope_common.dev.stack import LocalStack

    assert tunables_string(TRITON_MALLOC_TUNABLES) in LocalTriton(tmp_path).environment()["GLIBC_TUNABLES"]
    stack = LocalStack(env={}, log_dir=tmp_path, ports={"gateway": 1, "reporting": 2, "nifti": 3})
    assert "mmap_max" not in stack.worker_process().env.get("GLIBC_TUNABLES", "")  # the worker's memory budget
