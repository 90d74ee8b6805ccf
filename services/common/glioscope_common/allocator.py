"""glibc malloc settings for Triton, which takes and gives a 65 MB tensor per 160³ patch.

glibc serves blocks above 32 MiB with fresh mmap'd pages and unmaps them on free, so each request
paid page faults and page zeroing for its buffers (on the 2-core test VM a fresh 130 MB buffer cost
0.09 s in 4 KiB faults, a reused one 0.014 s). With these settings freed blocks stay in the heap for
the next request (`mmap_max=0`, a high `trim_threshold`) and the heap asks for transparent huge pages
(`hugetlb=1`, used where the kernel's THP mode is `madvise` or `always`). The cost: the process keeps
its heap at its peak.

The worker keeps glibc's defaults: the same settings made onnxruntime in an embedded worker faster
in isolation, but they raised its peak resident memory from about 2 to over 3 GiB, the worker's
budget (docs/performance.md, fifth session).

glibc reads GLIBC_TUNABLES when a process starts: LocalTriton and the chart's Triton container set it.
"""

from __future__ import annotations

from collections.abc import Mapping

TRITON_MALLOC_TUNABLES: dict[str, str] = {
    "glibc.malloc.hugetlb": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": str(4 << 30),
}


def tunables_string(tunables: Mapping[str, str]) -> str:
    return ":".join(f"{key}={value}" for key, value in tunables.items())


def with_malloc_tunables(env: Mapping[str, str], tunables: Mapping[str, str]) -> dict[str, str]:
    """`env` with GLIBC_TUNABLES extended by `tunables`. A tunable the environment already sets keeps
    its value (an operator's choice wins)."""
    existing = [item for item in env.get("GLIBC_TUNABLES", "").split(":") if item]
    already = {item.split("=", 1)[0] for item in existing}
    added = {key: value for key, value in tunables.items() if key not in already}
    result = dict(env)
    result["GLIBC_TUNABLES"] = ":".join(existing + ([tunables_string(added)] if added else []))
    return result
