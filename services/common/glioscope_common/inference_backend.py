"""Where the network runs: onnxruntime in-process (embedded default) or Triton over gRPC (production).

Both take a batch [N, C, P, P, P] float32 and return the model's output [N, L, P, P, P] (logits).
Chosen by `GLIOSCOPE_INFERENCE_URL`: "onnxruntime" or "grpc://host:8001".
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.model_metadata import ModelMetadata

__all__ = ["InferenceBackend", "OnnxRuntimeBackend", "TritonBackend", "make_backend"]


@runtime_checkable
class InferenceBackend(Protocol):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """[N, C, P, P, P] float32 -> [N, L, P, P, P] float32 logits."""
        ...


class OnnxRuntimeBackend:
    """onnxruntime on the CPU (CPUExecutionProvider, all graph optimisations)."""

    # One patch at a time in-process: a 160³ patch's activations take hundreds of MB; batching
    # buys no speed on a CPU and would double the worker's peak memory.
    preferred_batch_size = 1

    def __init__(
        self,
        model_path: str | Path,
        threads: int | None = None,
        *,
        input_name: str = "image",
        output_name: str = "logits",
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without the arena, activation buffers go back to the system after each patch.
        options.enable_cpu_mem_arena = False
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.input_name = input_name if input_name in inputs else inputs[0]
        self.output_name = output_name if output_name in outputs else outputs[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]


class TritonBackend:
    """NVIDIA Triton over gRPC (tritonclient.grpc). Connection and readiness are checked lazily on
    the first call (or explicitly with `check_ready`); failures raise UpstreamUnavailable."""

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
    ) -> None:
        self.url = url
        self.address = url.split("://", 1)[1] if "://" in url else url
        self.address = self.address.rstrip("/")
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = float(timeout_s)
        self.input_name = input_name
        self.output_name = output_name
        self.requests_in_flight = max(1, int(requests_in_flight))
        # tritonclient's gRPC client reuses one request message, so a client serves one call at a
        # time: calls check one out of this pool and put it back (as many clients as calls at once).
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._ready = False

    @contextmanager
    def _client(self) -> Iterator[Any]:
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            import tritonclient.grpc as grpcclient

            try:
                client = grpcclient.InferenceServerClient(url=self.address)
            except Exception as exc:  # bad address format etc.
                raise UpstreamUnavailable(f"cannot create a Triton client for {self.url}: {exc}") from exc
            with self._clients_lock:
                self._clients.append(client)
        try:
            yield client
        except BaseException:
            # A failed call may leave the channel backing off its reconnects (up to minutes after the
            # server came back): drop it, the next call opens a fresh one.
            with self._clients_lock:
                if client in self._clients:
                    self._clients.remove(client)
            client.close()
            raise
        self._idle.put(client)

    @property
    def client_count(self) -> int:
        """gRPC clients (channels) this backend holds: at most the calls it ever ran at once."""
        with self._clients_lock:
            return len(self._clients)

    def check_ready(self) -> None:
        try:
            with self._client() as client:
                live = client.is_server_live(client_timeout=self.timeout_s)
                ready = live and client.is_model_ready(self.model_name, self.model_version, client_timeout=self.timeout_s)
        except UpstreamUnavailable:
            raise
        except Exception as exc:
            raise UpstreamUnavailable(f"Triton at {self.url} is unreachable: {_short(exc)}") from exc
        if not live:
            raise UpstreamUnavailable(f"Triton at {self.url} is not live")
        if not ready:
            version = f" version {self.model_version}" if self.model_version else ""
            raise UpstreamUnavailable(f"model {self.model_name}{version} is not ready on Triton at {self.url}")
        self._ready = True

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import tritonclient.grpc as grpcclient

        if not self._ready:
            self.check_ready()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        inp = grpcclient.InferInput(self.input_name, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        out = grpcclient.InferRequestedOutput(self.output_name)
        try:
            with self._client() as client:
                result = client.infer(
                    self.model_name, [inp], model_version=self.model_version, outputs=[out],
                    client_timeout=self.timeout_s,
                )
        except UpstreamUnavailable:
            raise
        except Exception as exc:
            self._ready = False
            raise UpstreamUnavailable(f"Triton inference on {self.model_name} at {self.url} failed: {_short(exc)}") from exc
        logits = result.as_numpy(self.output_name)
        if logits is None:
            raise UpstreamUnavailable(f"Triton returned no output {self.output_name!r} for {self.model_name}")
        return logits.astype(np.float32, copy=False)

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        self._idle = queue.SimpleQueue()
        self._ready = False
        for client in clients:
            client.close()


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def make_backend(
    settings_inference_url: str,
    model_dir: Path,
    metadata: ModelMetadata,
    *,
    threads: int | None = None,
    timeout_s: float = 60,
    requests_in_flight: int = 2,
) -> InferenceBackend:
    """"onnxruntime" -> OnnxRuntimeBackend(model_dir / metadata.onnx_file) with `threads` (None or 0:
    onnxruntime's choice); "grpc://host:port" -> Triton serving the model named after `model_dir`'s
    folder (the Triton model repository layout), `requests_in_flight` patches at once."""
    url = settings_inference_url.strip()
    if url.lower() in ("onnxruntime", "ort", "local", ""):
        return OnnxRuntimeBackend(
            Path(model_dir) / metadata.onnx_file, threads or None,
            input_name=metadata.input_name, output_name=metadata.output_name,
        )
    if url.startswith("grpc://") or "://" not in url:
        return TritonBackend(
            url, Path(model_dir).name, timeout_s=timeout_s,
            input_name=metadata.input_name, output_name=metadata.output_name,
            requests_in_flight=requests_in_flight,
        )
    raise ValueError(f"unsupported inference URL {url!r}: use 'onnxruntime' or 'grpc://host:8001'")
