"""NVIDIA Triton over gRPC (production: `GLIOSCOPE_INFERENCE_URL=grpc://host:8001`): a pool of
connections, tensors in the gRPC message (triton_wire) or through system shared memory
(triton_shared_memory)."""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.inference_backend.triton_shared_memory import (
    CLEANUP_TIMEOUT_S,
    SHARED_MEMORY_MODES,
    SharedRegions,
    check_shared_memory_space,
    destroy_regions,
    short_error,
)
from glioscope_common.triton_wire import MODEL_INFER_METHOD, decode_infer_response, encode_infer_request, output_tensor

# Triton datatypes a model may use for its image and logits tensors, and their numpy types.
TRITON_DTYPES: dict[str, type[np.floating]] = {"FP32": np.float32, "FP16": np.float16}


class _Connection:
    """One pooled connection to Triton: tritonclient's client for the control calls and shared memory,
    and, opened on first use, a ModelInfer call that takes and gives raw message bytes (triton_wire)."""

    def __init__(self, address: str) -> None:
        import tritonclient.grpc as grpcclient

        self.address = address
        self.client = grpcclient.InferenceServerClient(url=address)
        self._channel: Any = None
        self._model_infer: Any = None

    def model_infer(self, message: bytes, timeout_s: float) -> bytes:
        if self._model_infer is None:
            import grpc

            # tritonclient's own channel limits: messages up to 2 GiB.
            limit = 2**31 - 1
            self._channel = grpc.insecure_channel(
                self.address, options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)])
            self._model_infer = self._channel.unary_unary(MODEL_INFER_METHOD)  # no (de)serialisers: bytes in, bytes out
        return self._model_infer(message, timeout=timeout_s)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._channel is not None:
                self._channel.close()


class TritonBackend:
    """NVIDIA Triton over gRPC (tritonclient.grpc). Connection and readiness are checked lazily on
    the first call (or explicitly with `check_ready`); failures raise UpstreamUnavailable.

    `shared_memory="system"`: tensors go through POSIX shared memory regions registered with Triton
    (one input and one output region per gRPC client) and only the request's metadata through gRPC.
    On the 2-core test machine a 160³ patch took 1.3-1.5 s over gRPC and 0.6 s through shared memory
    (onnxruntime in-process: 0.55 s). Works only where Triton can open this process's /dev/shm.
    """

    # One patch per request and two requests in flight: the next patch travels while Triton computes
    # this one, and Triton's dynamic batcher merges concurrent requests into GPU batches (raise
    # `requests_in_flight` for larger batches). Two-patch requests were 2-3x slower per patch on the
    # CPU test server (one 130 MB message instead of two 65 MB ones).
    preferred_batch_size = 1

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str = "",
        timeout_s: float = 60,
        *,
        input_name: str = "image",
        output_name: str = "logits",
        requests_in_flight: int = 2,
        shared_memory: str = "none",
        output_channels: int | None = None,
    ) -> None:
        if shared_memory not in SHARED_MEMORY_MODES:
            raise ValueError(f"shared_memory must be one of {SHARED_MEMORY_MODES}, not {shared_memory!r}")
        if shared_memory == "system" and not output_channels:
            raise ValueError("shared_memory='system' needs output_channels to size the output region")
        self.shared_memory = shared_memory
        self.output_channels = output_channels
        self._regions: dict[int, SharedRegions] = {}
        # The tensors' datatypes, read from Triton's model metadata by check_ready.
        self.input_datatype = "FP32"
        self.output_datatype = "FP32"
        self.url = url
        self.address = url.split("://", 1)[1] if "://" in url else url
        self.address = self.address.rstrip("/")
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = float(timeout_s)
        self.input_name = input_name
        self.output_name = output_name
        self.requests_in_flight = max(1, int(requests_in_flight))
        # tritonclient's gRPC client reuses one request message, so a connection serves one call at a
        # time: calls check one out of this pool and put it back (as many as calls at once).
        self._idle: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._clients: list[_Connection] = []
        self._clients_lock = threading.Lock()
        self._ready = False

    @contextmanager
    def _connection(self) -> Iterator[_Connection]:
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            try:
                connection = _Connection(self.address)
            except Exception as exc:  # bad address format etc.
                raise UpstreamUnavailable(f"cannot create a Triton client for {self.url}: {exc}") from exc
            with self._clients_lock:
                self._clients.append(connection)
        try:
            yield connection
        except BaseException:
            # A failed call may leave the channel backing off its reconnects (up to minutes after the
            # server came back): drop it, the next call opens a fresh one.
            with self._clients_lock:
                if connection in self._clients:
                    self._clients.remove(connection)
            try:
                self._release_regions(connection.client)
            finally:
                connection.close()
            raise
        self._idle.put(connection)

    def _shared_regions(self, client: Any, input_bytes: int, output_bytes: int) -> SharedRegions:
        """The client's regions, created and registered on first use (and again, larger, when a
        bigger batch comes)."""
        regions = self._regions.get(id(client))
        if regions and regions.input_bytes >= input_bytes and regions.output_bytes >= output_bytes:
            return regions
        if regions:
            self._release_regions(client)
        import tritonclient.utils.shared_memory as shm

        check_shared_memory_space(input_bytes + output_bytes)
        # A random name: PIDs repeat across containers and restarts, and Triton's registrations
        # outlive the process that made them.
        name = f"glioscope_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        handles: list[Any] = []
        registered: list[str] = []
        try:
            for suffix, size in (("in", input_bytes), ("out", output_bytes)):
                region = f"{name}_{suffix}"
                handles.append(shm.create_shared_memory_region(region, f"/{region}", size, create_only=True))
                client.register_system_shared_memory(region, f"/{region}", size, client_timeout=self.timeout_s)
                registered.append(region)
        except Exception as exc:
            self._unregister(client, registered)
            destroy_regions(handles)
            cause = f" ({short_error(exc.__cause__)})" if isinstance(exc.__cause__, Exception) else ""
            raise UpstreamUnavailable(
                f"Triton at {self.url} could not take a shared memory region: {short_error(exc)}{cause}. Triton must "
                "run on this host with the same /dev/shm and the same user (or root); otherwise set "
                "GLIOSCOPE_TRITON_SHARED_MEMORY=none"
            ) from exc
        regions = SharedRegions(name, handles[0], handles[1], input_bytes, output_bytes, tuple(registered))
        self._regions[id(client)] = regions
        return regions

    def _release_regions(self, client: Any) -> None:
        regions = self._regions.pop(id(client), None)
        if regions is None:
            return
        try:
            self._unregister(client, regions.registered)
        finally:
            destroy_regions([regions.input_handle, regions.output_handle])

    def _unregister(self, client: Any, names: Sequence[str]) -> None:
        for region in names:
            try:
                client.unregister_system_shared_memory(region, client_timeout=min(CLEANUP_TIMEOUT_S, self.timeout_s))
            except Exception:  # noqa: BLE001 - the server may be gone; its registrations went with it
                pass

    @property
    def client_count(self) -> int:
        """gRPC clients (channels) this backend holds: at most the calls it ever ran at once."""
        with self._clients_lock:
            return len(self._clients)

    def check_ready(self) -> None:
        try:
            with self._connection() as connection:
                client = connection.client
                live = client.is_server_live(client_timeout=self.timeout_s)
                ready = live and client.is_model_ready(self.model_name, self.model_version, client_timeout=self.timeout_s)
        except UpstreamUnavailable:
            raise
        except Exception as exc:
            raise UpstreamUnavailable(f"Triton at {self.url} is unreachable: {short_error(exc)}") from exc
        if not live:
            raise UpstreamUnavailable(f"Triton at {self.url} is not live")
        if not ready:
            version = f" version {self.model_version}" if self.model_version else ""
            raise UpstreamUnavailable(f"model {self.model_name}{version} is not ready on Triton at {self.url}")
        self.input_datatype, self.output_datatype = self._tensor_datatypes()
        self._ready = True

    def _tensor_datatypes(self) -> tuple[str, str]:
        try:
            with self._connection() as connection:
                meta = connection.client.get_model_metadata(self.model_name, self.model_version, as_json=True,
                                                 client_timeout=self.timeout_s)
        except Exception as exc:
            raise UpstreamUnavailable(f"Triton at {self.url} gave no metadata for {self.model_name}: {short_error(exc)}") from exc
        tensors = {t.get("name"): t for t in meta.get("inputs", []) + meta.get("outputs", [])}
        datatypes = tuple(tensors.get(name, {}).get("datatype") for name in (self.input_name, self.output_name))
        for name, datatype in zip((self.input_name, self.output_name), datatypes):
            if datatype not in TRITON_DTYPES:
                raise UpstreamUnavailable(
                    f"{self.model_name} on Triton has tensor {name!r} as {datatype}; FP32 or FP16 expected")
        # [batch, channels, ...] with a dynamic batch: a model whose channels disagree with its
        # metadata.json labels is refused here, not after a job's first patch.
        shape = [int(d) for d in tensors[self.output_name].get("shape", [])]
        if self.output_channels and len(shape) >= 2 and shape[1] > 0 and shape[1] != self.output_channels:
            raise UpstreamUnavailable(
                f"{self.model_name} on Triton gives {shape[1]} output channels; its metadata.json labels need "
                f"{self.output_channels} (background + labels)")
        return datatypes[0], datatypes[1]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if not self._ready:
            self.check_ready()
        batch = np.ascontiguousarray(batch, dtype=TRITON_DTYPES[self.input_datatype])
        try:
            with self._connection() as connection:
                if self.shared_memory == "system":
                    return self._infer_shared(connection.client, batch)
                message = encode_infer_request(
                    self.model_name, self.model_version, self.input_name, self.input_datatype, batch, [self.output_name])
                header, contents = decode_infer_response(connection.model_infer(message, self.timeout_s))
                logits, datatype = output_tensor(header, contents, self.output_name, TRITON_DTYPES)
        except UpstreamUnavailable:
            raise
        except Exception as exc:
            self._ready = False
            raise UpstreamUnavailable(f"Triton inference on {self.model_name} at {self.url} failed: {short_error(exc)}") from exc
        if datatype != self.output_datatype:
            raise UpstreamUnavailable(f"Triton returned {datatype} for {self.output_name!r}, expected {self.output_datatype}")
        # float32 logits stay a read-only view of the received message: the caller only reads them.
        return logits.astype(np.float32, copy=False)

    def _infer_shared(self, client: Any, batch: np.ndarray) -> np.ndarray:
        import tritonclient.grpc as grpcclient
        import tritonclient.utils.shared_memory as shm

        inp = grpcclient.InferInput(self.input_name, list(batch.shape), self.input_datatype)
        out = grpcclient.InferRequestedOutput(self.output_name)
        assert self.output_channels
        output_dtype = TRITON_DTYPES[self.output_datatype]
        output_bytes = batch.size // batch.shape[1] * self.output_channels * np.dtype(output_dtype).itemsize
        for attempt in (1, 2):
            regions = self._shared_regions(client, batch.nbytes, output_bytes)
            shm.set_shared_memory_region(regions.input_handle, [batch])
            inp.set_shared_memory(f"{regions.name}_in", batch.nbytes)
            out.set_shared_memory(f"{regions.name}_out", output_bytes)
            try:
                result = client.infer(
                    self.model_name, [inp], model_version=self.model_version, outputs=[out], client_timeout=self.timeout_s,
                )
                break
            except Exception as exc:
                # A restarted Triton has forgotten the registrations: register again, once.
                if attempt == 2 or "shared memory region" not in str(exc).lower():
                    raise
                self._release_regions(client)
        meta = result.get_output(self.output_name)
        if meta is None:
            raise UpstreamUnavailable(f"Triton returned no output {self.output_name!r} for {self.model_name}")
        if meta.datatype != self.output_datatype:
            raise UpstreamUnavailable(f"Triton returned {meta.datatype} for {self.output_name!r}, expected {self.output_datatype}")
        # A copy: the region is this client's next call's output too.
        return np.array(shm.get_contents_as_numpy(regions.output_handle, output_dtype, list(meta.shape)), dtype=np.float32)

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        self._idle = queue.SimpleQueue()
        self._ready = False
        for connection in clients:
            try:
                self._release_regions(connection.client)
            finally:
                connection.close()

