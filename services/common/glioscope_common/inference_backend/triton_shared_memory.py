"""System shared memory between this process and a Triton on the same host: one input and one
output region in /dev/shm per gRPC client, registered with Triton (`GLIOSCOPE_TRITON_SHARED_MEMORY=system`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glioscope_common.errors import UpstreamUnavailable

SHARED_MEMORY_MODES = ("none", "system")
SHARED_MEMORY_DIR = Path("/dev/shm")
CLEANUP_TIMEOUT_S = 5.0  # unregistering on a failing channel must not hold the caller for minutes


@dataclass
class SharedRegions:
    """One client's registered input and output regions in /dev/shm (its one call at a time uses them)."""

    name: str
    input_handle: Any
    output_handle: Any
    input_bytes: int
    output_bytes: int
    registered: tuple[str, ...]


def check_shared_memory_space(needed: int) -> None:
    """Refuse clearly when /dev/shm cannot hold the regions: a region is only sized, not reserved,
    and writing past a full /dev/shm kills the writer (SIGBUS) instead of raising."""
    try:
        stat = os.statvfs(SHARED_MEMORY_DIR)
    except OSError:
        return
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise UpstreamUnavailable(
            f"{SHARED_MEMORY_DIR} has {free / 2**20:.0f} MiB free; shared memory to Triton needs {needed / 2**20:.0f} MiB "
            "per request in flight (raise the size of /dev/shm, or set GLIOSCOPE_TRITON_SHARED_MEMORY=none)"
        )


def destroy_regions(handles: Sequence[Any]) -> None:
    import tritonclient.utils.shared_memory as shm

    for handle in handles:
        try:
            shm.destroy_shared_memory_region(handle)
        except Exception:  # noqa: BLE001 - one region's failure must not leave the others behind
            pass


def short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
