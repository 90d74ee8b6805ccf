"""glibc malloc settings for the processes that move large tensors: the inference worker and Triton.

Each 160³ patch makes several 65 MB buffers (the batch, the gRPC messages, the logits, the softmax,
onnxruntime's activations). glibc serves blocks above 32 MiB with fresh mmap'd pages and unmaps them
on free, so every patch paid page faults and page zeroing for hundreds of MB: on the 2-core test VM
a fresh 130 MB buffer cost 0.09 s in 4 KiB faults, a reused one 0.014 s. With these settings freed
blocks stay in the heap for the next patch (`mmap_max=0`, a high `trim_threshold`), and the heap asks
for transparent huge pages (`hugetlb=1`, used where the kernel's THP mode is `madvise` or `always`).
Measured on that VM (docs/performance.md, "Allocator"): one sliding-window pass 5.8 → 4.2–4.5 s
with onnxruntime in process. The cost: a process keeps its heap at its peak instead of returning it.

glibc reads GLIBC_TUNABLES when a process starts, so these go into the environment of the processes
we start (LocalStack's worker, LocalTriton) and into the chart's worker and Triton containers.
"""

from __future__ import annotations

from collections.abc import Mapping

# For the processes that run the model: onnxruntime in the worker (embedded), and Triton.
MODEL_PROCESS_TUNABLES: dict[str, str] = {
    "glibc.malloc.hugetlb": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": str(4 << 30),
}
# For a worker that sends its patches to Triton: huge pages only. Keeping freed blocks bought it
# nothing measurable there, and its memory then falls back after each job.
TRITON_CLIENT_TUNABLES: dict[str, str] = {"glibc.malloc.hugetlb": "1"}


def tunables_string(tunables: Mapping[str, str]) -> str:
    return ":".join(f"{key}={value}" for key, value in tunables.items())


def worker_tunables(inference_url: str) -> dict[str, str]:
    """The worker's settings for its GLIOSCOPE_INFERENCE_URL (the chart's `auto` does the same)."""
    return TRITON_CLIENT_TUNABLES if "://" in inference_url else MODEL_PROCESS_TUNABLES


def with_malloc_tunables(env: Mapping[str, str], tunables: Mapping[str, str]) -> dict[str, str]:
    """`env` with GLIBC_TUNABLES extended by `tunables`. A tunable the environment already sets keeps
    its value (an operator's choice wins)."""
    existing = [item for item in env.get("GLIBC_TUNABLES", "").split(":") if item]
    already = {item.split("=", 1)[0] for item in existing}
    added = {key: value for key, value in tunables.items() if key not in already}
    result = dict(env)
    result["GLIBC_TUNABLES"] = ":".join(existing + ([tunables_string(added)] if added else []))
    return result
