from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.dev.testing import require_module
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.inference_backend import OnnxRuntimeBackend, TritonBackend, make_backend
from glioscope_inference.sliding_window import gaussian_importance_map, sliding_window_inference, window_starts


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def expected_probabilities(image: np.ndarray) -> np.ndarray:
    """What the tiny 1x1x1 model gives voxel by voxel (translation-equivariant everywhere)."""
    logits = np.stack([
        np.full(image.shape[1:], 2.0, np.float32),
        np.full(image.shape[1:], -10.0, np.float32),
        image[3],
        2.0 * image[1],
    ])
    return softmax(logits)


def test_onnx_backend_runs_tiny_model(tiny_backend):
    batch = np.random.default_rng(0).normal(size=(2, 4, 16, 16, 16)).astype(np.float32)
    out = tiny_backend.infer(batch)
    assert out.shape == (2, 4, 16, 16, 16)
    np.testing.assert_allclose(out[1, 3], 2.0 * batch[1, 1], rtol=1e-5)


def test_output_equals_pointwise_model(tiny_backend):
    image = np.random.default_rng(1).normal(size=(4, 40, 30, 20)).astype(np.float32)
    calls = []
    probs = sliding_window_inference(image, tiny_backend, (16, 16, 16), 0.5, batch_size=3, progress=calls.append)
    assert probs.shape == (4, 40, 30, 20) and probs.dtype == np.float32
    # every window gives the same value at a voxel, so Gaussian blending must reproduce it exactly: no seams
    np.testing.assert_allclose(probs, expected_probabilities(image), atol=1e-5)
    assert calls and calls[-1] == pytest.approx(1.0) and all(np.diff(calls) > 0)


def test_image_smaller_than_patch(tiny_backend):
    image = np.random.default_rng(2).normal(size=(4, 10, 7, 16)).astype(np.float32)
    probs = sliding_window_inference(image, tiny_backend, (16, 16, 16), 0.5)
    assert probs.shape == (4, 10, 7, 16)
    np.testing.assert_allclose(probs, expected_probabilities(image), atol=1e-5)


class PositionBackend:
    """A model that is NOT translation-equivariant: class 1 wins at the patch border, 0 in the middle."""

    def __init__(self):
        self.shapes = []

    def infer(self, batch):
        self.shapes.append(batch.shape)
        n, _, p, q, r = batch.shape
        grid = np.indices((p, q, r)).astype(np.float32)
        centre = (np.array([p, q, r], np.float32) - 1) / 2
        dist = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0)) / (p / 2)
        logits = np.stack([np.zeros_like(dist), 4 * (dist - 0.95)])
        return np.repeat(logits[None], n, axis=0)


def test_gaussian_weighting_favours_patch_centres_and_shapes_are_fixed():
    backend = PositionBackend()
    image = np.zeros((1, 48, 48, 48), np.float32)
    probs = sliding_window_inference(image, backend, (16, 16, 16), 0.5, batch_size=4)
    assert {s[1:] for s in backend.shapes} == {(1, 16, 16, 16)}
    interior = probs[1, 8:-8, 8:-8, 8:-8]
    # centres of neighbouring windows dominate: the border class never wins inside the image
    assert interior.max() < 0.5


def test_window_starts_cover_and_gaussian_map():
    assert window_starts(10, 16, 0.5) == [0]
    starts = window_starts(40, 16, 0.5)
    assert starts[0] == 0 and starts[-1] == 24 and max(np.diff(starts)) <= 8
    w = gaussian_importance_map((16, 16, 16))
    assert w.max() == pytest.approx(1.0) and w.min() > 0 and w.dtype == np.float32


def test_triton_down_raises_upstream_unavailable():
    backend = TritonBackend("grpc://127.0.0.1:1", "glioscope_unet", timeout_s=2)
    with pytest.raises(UpstreamUnavailable, match="Triton"):
        backend.infer(np.zeros((1, 4, 8, 8, 8), np.float32))


def test_make_backend_choices(tiny_model_dir, tiny_metadata):
    assert isinstance(make_backend("onnxruntime", tiny_model_dir, tiny_metadata), OnnxRuntimeBackend)
    triton = make_backend("grpc://triton:8001", tiny_model_dir, tiny_metadata)
    assert isinstance(triton, TritonBackend) and triton.model_name == tiny_model_dir.name and triton.address == "triton:8001"
    assert triton.requests_in_flight == 2
    assert make_backend("grpc://triton:8001", tiny_model_dir, tiny_metadata, requests_in_flight=6).requests_in_flight == 6
    assert triton.shared_memory == "none"
    shared = make_backend("grpc://triton:8001", tiny_model_dir, tiny_metadata, triton_shared_memory="system")
    assert shared.shared_memory == "system" and shared.output_channels == len(tiny_metadata.labels) + 1


def test_the_worker_builds_its_backend_from_its_settings(monkeypatch, tmp_path, tiny_model_dir, tiny_metadata):
    """GLIOSCOPE_INFERENCE_THREADS and GLIOSCOPE_TRITON_REQUESTS_IN_FLIGHT reach the backend."""
    from glioscope_inference.segmentation import tasks

    monkeypatch.setenv("GLIOSCOPE_MODEL_REPOSITORY", str(tiny_model_dir.parent))
    monkeypatch.setenv("GLIOSCOPE_MODEL_NAME", tiny_model_dir.name)
    monkeypatch.setenv("GLIOSCOPE_DATABASE_URL", f"sqlite:///{tmp_path}/jobs.db")
    monkeypatch.setenv("GLIOSCOPE_INFERENCE_URL", "grpc://triton:8001")
    monkeypatch.setenv("GLIOSCOPE_TRITON_REQUESTS_IN_FLIGHT", "5")
    tasks._service.cache_clear()  # the worker builds it once per process
    try:
        service, _, _ = tasks._service()
        assert service._backend_factory().requests_in_flight == 5
        assert service._backend_factory().shared_memory == "none"
        monkeypatch.setenv("GLIOSCOPE_TRITON_SHARED_MEMORY", "system")
        tasks._service.cache_clear()
        service, _, _ = tasks._service()
        assert service._backend_factory().shared_memory == "system"
        closed = []
        service._backend_factory().close = lambda: closed.append(True)
        tasks._close_backend()  # the worker process's shutdown gives the regions back
        assert closed == [True]
        monkeypatch.setenv("GLIOSCOPE_INFERENCE_URL", "onnxruntime")
        monkeypatch.setenv("GLIOSCOPE_INFERENCE_THREADS", "1")
        tasks._service.cache_clear()
        service, _, _ = tasks._service()
        assert service._backend_factory().session.get_session_options().intra_op_num_threads == 1
    finally:
        tasks._service.cache_clear()


class SlowFirstBackend:
    """Answers the first request last (it sleeps) and counts how many requests overlap."""

    def __init__(self, inner):
        import threading

        self.inner = inner
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def infer(self, batch):
        import time

        with self.lock:
            self.calls += 1
            first = self.calls == 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if first:
                time.sleep(0.2)
            return self.inner.infer(batch)
        finally:
            with self.lock:
                self.active -= 1


def test_requests_in_flight_overlap_and_give_the_same_result(tiny_backend):
    image = np.random.default_rng(5).normal(size=(4, 40, 30, 20)).astype(np.float32)
    one = sliding_window_inference(image, tiny_backend, (16, 16, 16), 0.5, batch_size=1)
    backend = SlowFirstBackend(tiny_backend)
    calls = []
    many = sliding_window_inference(image, backend, (16, 16, 16), 0.5, batch_size=1, requests_in_flight=3,
                                    progress=calls.append)
    assert backend.most_active >= 2  # the later requests went out while the first was still running
    np.testing.assert_array_equal(many, one)  # accumulated in order: bit-identical
    assert calls[-1] == pytest.approx(1.0) and all(np.diff(calls) > 0)


def test_mirroring_inside_the_graph_equals_whole_volume_passes(tmp_path):
    """A model rewritten by glioscope_training.mirror_graph (one request per patch, probabilities
    out) gives what the worker computed with a second, mirrored sliding-window pass: the windows are
    placed symmetrically and the Gaussian weight is symmetric."""
    onnx = require_module("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from glioscope_training.mirror_graph import mirror_in_graph

    rng = np.random.default_rng(5)
    weights = numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"], pads=[1] * 6)], "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4, 16, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, 16, 16, 16])], [weights])
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plain.ir_version = 8
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    onnx.save(mirror_in_graph(plain, [0]), str(tmp_path / "mirrored.onnx"))
    image = rng.normal(size=(4, 37, 29, 20)).astype(np.float32)

    two_passes = OnnxRuntimeBackend(tmp_path / "plain.onnx", 1)
    expected = sliding_window_inference(image, two_passes, (16, 16, 16), 0.5)
    expected += np.flip(sliding_window_inference(np.flip(image, 1), two_passes, (16, 16, 16), 0.5), 1)
    expected /= 2

    class ReadOnly:  # as TritonBackend: a read-only view of the received message
        def __init__(self, backend: OnnxRuntimeBackend) -> None:
            self.backend = backend

        def infer(self, batch: np.ndarray) -> np.ndarray:
            out = self.backend.infer(batch)
            out.setflags(write=False)
            return out

    one_pass = ReadOnly(OnnxRuntimeBackend(tmp_path / "mirrored.onnx", 1))
    got = sliding_window_inference(image, one_pass, (16, 16, 16), 0.5, output_type="probabilities",
                                   requests_in_flight=2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-5)
