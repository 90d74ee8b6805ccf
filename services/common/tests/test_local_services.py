"""Local Orthanc and Triton processes, and the Postgres/Redis/RabbitMQ fixtures of glioscope_common.dev.testing."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from glioscope_common.dev.orthanc import LOCAL_SCU_AET, LocalOrthanc
from glioscope_common.dev.processes import ServiceStartError, free_port
from glioscope_common.dev.triton import tritonserver_binary

from glioscope_common.dev.testing import make_mr_series, require_executable, require_module


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID

pytestmark = pytest.mark.services


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.services
def test_orthanc_serves_dicomweb(orthanc) -> None:
    assert orthanc.url.startswith("http://127.0.0.1:")
    assert orthanc.dicomweb_url == orthanc.url + "/dicom-web"
    assert "dicom-web" in httpx.get(orthanc.url + "/plugins", auth=orthanc.auth).json()
    system = httpx.get(orthanc.url + "/system", auth=orthanc.auth).json()
    assert system["DicomAet"] == orthanc.aet == "GLIOSCOPE"
    assert system["DicomPort"] == orthanc.dicom_port
    assert httpx.get(orthanc.dicomweb_url + "/studies", headers={"Accept": "application/dicom+json"},
                     auth=orthanc.auth).status_code in (200, 204)
    # locked down: nothing without the credentials (the rest is in tests/security/test_orthanc_lockdown.py)
    assert httpx.get(orthanc.url + "/system").status_code == 401


@pytest.mark.services
def test_orthanc_fixed_ports_and_clear_start_error(tmp_path: Path) -> None:
    http_port, dicom_port = free_port(), free_port()
    with LocalOrthanc(tmp_path / "a", http_port=http_port, dicom_port=dicom_port) as a:
        assert a.url == f"http://127.0.0.1:{http_port}" and a.dicom_port == dicom_port
        # a second Orthanc on the same HTTP port cannot start: the error says why, with the log tail
        with pytest.raises(ServiceStartError, match="Orthanc"):
            LocalOrthanc(tmp_path / "b", http_port=http_port, startup_timeout=10).start()
    assert not a.running


@pytest.mark.services
def test_cstore_with_storescu_reaches_orthanc_and_study_becomes_stable(orthanc, tmp_path: Path) -> None:
    storescu = require_executable("storescu", "Debian dcmtk")
    rest = orthanc.rest()
    _, since, _ = rest.changes(since=0, limit=0)
    changes, last, _ = rest.changes(since=0, limit=1000)
    while changes:
        since = last
        changes, last, _ = rest.changes(since=since, limit=1000)

    instances = make_mr_series(3, patient_id="CSTORE-1", seed=7)
    study, series, _ = _uids(instances[0])
    files = []
    for i, data in enumerate(instances):
        f = tmp_path / f"{i}.dcm"
        f.write_bytes(data)
        files.append(str(f))
    proc = subprocess.run(
        [storescu, "-aet", LOCAL_SCU_AET, "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port), *files],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    study_id = rest.find_study(study)
    assert study_id is not None
    assert len(orthanc.dicomweb().search_instances(study, series)) == 3

    deadline = time.monotonic() + 15  # StableAge is 2 s in the fixture; Orthanc checks about every second
    stable = False
    while time.monotonic() < deadline and not stable:
        changes, last, _ = rest.changes(since=since, limit=100)
        since = last
        stable = any(c["ChangeType"] == "StableStudy" and c["ID"] == study_id for c in changes)
        if not stable:
            time.sleep(0.5)
    assert stable, "no StableStudy change after StableAge"
    assert rest.study(study_id)["IsStable"] is True


def test_tritonserver_binary_is_in_the_pytriton_wheel() -> None:
    require_module("pytriton")
    binary = tritonserver_binary()
    assert binary.name == "tritonserver" and binary.exists()


# --------------------------------------------------------------------------------------------- databases


@pytest.mark.services
def test_postgres_fixture_gives_a_fresh_database(postgres_url: str) -> None:
    import sqlalchemy as sa

    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/glioscope_test_")
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar() == postgres_url.rsplit("/", 1)[1]
        assert conn.execute(sa.text("select count(*) from information_schema.tables where table_schema='public'")).scalar() == 0
        conn.execute(sa.text("create table t (x int)"))
    engine.dispose()


@pytest.mark.services
def test_redis_fixture(redis_url: str) -> None:
    import redis

    # the fixture hands out one of the numbered databases 1..15, never the default database 0
    database = int(redis_url.rsplit("/", 1)[1])
    assert 1 <= database <= 15, redis_url
    client = redis.Redis.from_url(redis_url)
    assert client.connection_pool.connection_kwargs["db"] == database
    key = f"glioscope:test:{secrets.token_hex(4)}"
    assert client.get(key) is None
    assert client.set(key, "1") is True
    assert client.get(key) == b"1"
    assert client.delete(key) == 1
    client.close()


@pytest.mark.services
def test_rabbitmq_fixture(rabbitmq_url: str) -> None:
    kombu = require_module("kombu")
    with kombu.Connection(rabbitmq_url) as conn:
        queue = conn.SimpleQueue(f"glioscope-test-{free_port()}", queue_opts={"auto_delete": True})
        queue.put({"ok": True})
        message = queue.get(timeout=5)
        message.ack()
        assert message.payload == {"ok": True}
        queue.close()


# --------------------------------------------------------------------------------------------- Triton

TINY_CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "image" data_type: {dtype} dims: [ 4, 8, 8, 8 ] }} ]
output [ {{ name: "logits" data_type: {dtype} dims: [ 4, 8, 8, 8 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
instance_group [ {{ count: 1 kind: {kind} }} ]
{extra}"""


def build_tiny_model_repository(root: Path) -> Path:
    """A model repository like the real one: `tiny` = a 1x1x1 Conv doubling each of 4 channels, and
    `tiny16` = the same with float16 image and logits (cast to float32 and back inside)."""
    onnx = require_module("onnx")
    from onnx import TensorProto, helper

    weight = (2.0 * np.eye(4, dtype=np.float32)).reshape(4, 4, 1, 1, 1)
    gpu_extra = (
        'optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
        'parameters { key: "precision_mode" value: "FP16" } } ] } }\n'
    )
    for name, elem, dtype in (("tiny", TensorProto.FLOAT, "TYPE_FP32"), ("tiny16", TensorProto.FLOAT16, "TYPE_FP16")):
        model_dir = root / name
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "configs").mkdir()
        if elem == TensorProto.FLOAT:
            nodes = [helper.make_node("Conv", ["image", "W"], ["logits"])]
        else:
            nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
                     helper.make_node("Conv", ["x", "W"], ["y"]),
                     helper.make_node("Cast", ["y"], ["logits"], to=TensorProto.FLOAT16)]
        graph = helper.make_graph(
            nodes,
            name,
            [helper.make_tensor_value_info("image", elem, ["N", 4, 8, 8, 8])],
            [helper.make_tensor_value_info("logits", elem, ["N", 4, 8, 8, 8])],
            [helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.flatten())],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, model_dir / "1" / "model.onnx")
        (model_dir / "config.pbtxt").write_text(TINY_CONFIG.format(name=name, dtype=dtype, kind="KIND_GPU", extra=gpu_extra))
        (model_dir / "configs" / "cpu.pbtxt").write_text(TINY_CONFIG.format(name=name, dtype=dtype, kind="KIND_CPU", extra=""))
    return root


@pytest.fixture(scope="session")
def triton_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_repository(tmp_path_factory.mktemp("model_repository"))


@pytest.mark.services
def test_triton_serves_the_tiny_onnx_model_over_grpc(triton) -> None:
    grpcclient = require_module("tritonclient.grpc")
    assert triton.grpc_url.startswith("grpc://127.0.0.1:")
    assert httpx.get(triton.http_url + "/v2/health/ready").status_code == 200
    client = grpcclient.InferenceServerClient(triton.grpc_url.removeprefix("grpc://"))
    assert client.is_model_ready("tiny")
    config = client.get_model_config("tiny").config
    assert config.max_batch_size == 4 and config.dynamic_batching is not None
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 4, 8, 8, 8)).astype(np.float32)
        inp = grpcclient.InferInput("image", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("tiny", [inp], outputs=[grpcclient.InferRequestedOutput("logits")])
        out = result.as_numpy("logits")
        assert out.shape == (batch, 4, 8, 8, 8)
        np.testing.assert_allclose(out, 2 * x, rtol=1e-6)
    client.close()
    metrics = httpx.get(triton.metrics_url).text
    assert 'nv_inference_request_success{model="tiny"' in metrics


@pytest.mark.services
def test_triton_backend_reuses_its_clients_across_jobs(triton) -> None:
    """Every job runs its requests from new threads; the backend must not open a channel per thread."""
    from concurrent.futures import ThreadPoolExecutor

    from glioscope_common.errors import UpstreamUnavailable
    from glioscope_common.inference_backend import TritonBackend

    backend = TritonBackend(triton.grpc_url, "tiny", requests_in_flight=2)
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8, 8)).astype(np.float32)
    try:
        for _job in range(4):
            with ThreadPoolExecutor(max_workers=2) as pool:  # what sliding_window_inference does per job
                outputs = list(pool.map(lambda _: backend.infer(x), range(6)))
            for out in outputs:
                np.testing.assert_allclose(out, 2 * x, rtol=1e-6)
        assert 1 <= backend.client_count <= 2
        with pytest.raises(UpstreamUnavailable):
            backend.infer(np.zeros((1, 3, 8, 8, 8), dtype=np.float32))  # wrong channel count: refused
        assert backend.client_count <= 1  # the failed call's channel is not reused
        np.testing.assert_allclose(backend.infer(x), 2 * x, rtol=1e-6)
    finally:
        backend.close()
    assert backend.client_count == 0


@pytest.mark.services
def test_triton_backend_through_system_shared_memory(triton) -> None:
    """Tensors through /dev/shm regions (one pair per client, larger when a bigger batch comes),
    the same results as gRPC, and nothing left registered or in /dev/shm after close."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    from glioscope_common.errors import UpstreamUnavailable
    from glioscope_common.inference_backend import TritonBackend

    backend = TritonBackend(triton.grpc_url, "tiny", shared_memory="system", output_channels=4)
    rng = np.random.default_rng(2)
    status = grpcclient.InferenceServerClient(triton.grpc_url.split("://")[1])
    ours = f"glioscope_{os.getpid()}_"
    try:
        for batch in (1, 3, 1):
            x = rng.standard_normal((batch, 4, 8, 8, 8)).astype(np.float32)
            np.testing.assert_allclose(backend.infer(x), 2 * x, rtol=1e-6)
        x = rng.standard_normal((1, 4, 8, 8, 8)).astype(np.float32)
        with ThreadPoolExecutor(max_workers=2) as pool:
            outputs = list(pool.map(lambda _: backend.infer(x), range(6)))
        for out in outputs:
            np.testing.assert_allclose(out, 2 * x, rtol=1e-6)
        registered = [r["name"] for r in status.get_system_shared_memory_status(as_json=True).get("regions", {}).values()]
        assert len([n for n in registered if n.startswith(ours)]) == 2 * backend.client_count
        with pytest.raises(UpstreamUnavailable):
            backend.infer(np.zeros((1, 3, 8, 8, 8), dtype=np.float32))  # wrong channel count: refused
        np.testing.assert_allclose(backend.infer(x), 2 * x, rtol=1e-6)
        status.unregister_system_shared_memory()  # as after a Triton restart: the server forgot them all
        clients_before = backend.client_count
        np.testing.assert_allclose(backend.infer(x), 2 * x, rtol=1e-6)  # registered again, no error
        assert backend.client_count == clients_before  # the client was kept, only its regions renewed
        renewed = [r["name"] for r in status.get_system_shared_memory_status(as_json=True).get("regions", {}).values()]
        assert [n for n in renewed if n.startswith(ours)]
    finally:
        backend.close()
    registered = [r["name"] for r in status.get_system_shared_memory_status(as_json=True).get("regions", {}).values()]
    status.close()
    assert not [n for n in registered if n.startswith(ours)]
    assert not [p for p in Path("/dev/shm").glob(f"{ours}*")]


class _RefusingClient:
    """A gRPC client stand-in whose Triton takes the input region and refuses the output region."""

    def __init__(self) -> None:
        self.registered: list[str] = []
        self.unregistered: list[str] = []

    def register_system_shared_memory(self, name: str, key: str, size: int, client_timeout: float | None = None) -> None:
        if name.endswith("_out"):
            raise RuntimeError("[StatusCode.INVALID_ARG] unable to open shared memory region")
        self.registered.append(name)

    def unregister_system_shared_memory(self, name: str = "", client_timeout: float | None = None) -> None:
        self.unregistered.append(name)


def test_a_refused_shared_memory_region_leaves_nothing_behind() -> None:
    require_module("tritonclient.utils.shared_memory")
    from glioscope_common.errors import UpstreamUnavailable
    from glioscope_common.inference_backend import TritonBackend

    backend = TritonBackend("grpc://127.0.0.1:1", "tiny", shared_memory="system", output_channels=4)
    client = _RefusingClient()
    with pytest.raises(UpstreamUnavailable, match="same /dev/shm"):
        backend._shared_regions(client, 4096, 4096)
    assert client.unregistered == client.registered and len(client.registered) == 1  # only what it registered
    assert not list(Path("/dev/shm").glob(f"glioscope_{os.getpid()}_*"))


def test_a_full_dev_shm_is_refused_before_anything_is_written(monkeypatch) -> None:
    require_module("tritonclient.utils.shared_memory")
    from glioscope_common.errors import UpstreamUnavailable
    from glioscope_common.inference_backend import TritonBackend, triton_shared_memory

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(triton_shared_memory.os, "statvfs", lambda path: Full())
    backend = TritonBackend("grpc://127.0.0.1:1", "tiny", shared_memory="system", output_channels=4)
    client = _RefusingClient()
    with pytest.raises(UpstreamUnavailable, match="MiB free"):
        backend._shared_regions(client, 2**20, 2**20)
    assert client.registered == [] and not list(Path("/dev/shm").glob(f"glioscope_{os.getpid()}_*"))


@pytest.mark.services
@pytest.mark.parametrize("shared_memory", ["none", "system"])
def test_triton_backend_with_a_float16_model(triton, shared_memory: str) -> None:
    """A model with float16 tensors gets float16 (half the bytes) and hands back float32."""
    from glioscope_common.inference_backend import TritonBackend

    backend = TritonBackend(triton.grpc_url, "tiny16", shared_memory=shared_memory, output_channels=4)
    x = np.random.default_rng(3).standard_normal((2, 4, 8, 8, 8)).astype(np.float32)
    try:
        out = backend.infer(x)
        assert (backend.input_datatype, backend.output_datatype) == ("FP16", "FP16")
        assert out.dtype == np.float32 and out.shape == x.shape
        np.testing.assert_allclose(out, 2 * x.astype(np.float16).astype(np.float32), rtol=2e-3, atol=1e-3)
    finally:
        backend.close()


@pytest.mark.services
def test_triton_backend_refuses_a_model_whose_channels_disagree_with_its_labels(triton) -> None:
    from glioscope_common.errors import UpstreamUnavailable
    from glioscope_common.inference_backend import TritonBackend

    backend = TritonBackend(triton.grpc_url, "tiny", output_channels=3)  # tiny gives 4 channels
    try:
        with pytest.raises(UpstreamUnavailable, match="4 output channels"):
            backend.infer(np.zeros((1, 4, 8, 8, 8), dtype=np.float32))
    finally:
        backend.close()


def test_onnxruntime_backend_with_a_float16_model(tmp_path: Path) -> None:
    require_module("onnxruntime")
    from glioscope_common.inference_backend import OnnxRuntimeBackend

    repo = build_tiny_model_repository(tmp_path / "repo")
    backend = OnnxRuntimeBackend(repo / "tiny16" / "1" / "model.onnx", threads=1)
    x = np.random.default_rng(4).standard_normal((1, 4, 8, 8, 8)).astype(np.float32)
    out = backend.infer(x)
    assert backend.input_dtype == np.float16 and out.dtype == np.float32
    np.testing.assert_allclose(out, 2 * x.astype(np.float16).astype(np.float32), rtol=2e-3, atol=1e-3)


def test_triton_backend_shared_memory_needs_a_known_output_size() -> None:
    from glioscope_common.inference_backend import TritonBackend

    with pytest.raises(ValueError, match="output_channels"):
        TritonBackend("grpc://127.0.0.1:1", "tiny", shared_memory="system")
    with pytest.raises(ValueError, match="shared_memory"):
        TritonBackend("grpc://127.0.0.1:1", "tiny", shared_memory="cuda", output_channels=4)


@pytest.mark.services
def test_triton_reports_a_broken_model_with_its_log(tmp_path: Path) -> None:
    require_module("pytriton")
    from glioscope_common.dev.triton import LocalTriton

    repo = build_tiny_model_repository(tmp_path / "repo")
    (repo / "tiny" / "configs" / "cpu.pbtxt").write_text("name: \"tiny\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n"
                                                         "input [ { name: \"image\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n"
                                                         "output [ { name: \"logits\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n")
    (repo / "tiny" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ServiceStartError, match="Triton") as info:
        LocalTriton(repo, startup_timeout=60).start()
    assert "log" in str(info.value)


def test_a_local_triton_can_run_at_the_workers_niceness(tmp_path: Path) -> None:
    require_module("pytriton")
    from glioscope_common.dev.triton import LocalTriton

    niced, plain = LocalTriton(tmp_path, nice=10), LocalTriton(tmp_path)
    niced.served_repository = plain.served_repository = tmp_path
    command = niced.command(tmp_path)
    assert command[:3] == ["nice", "-n", "10"] and command[3].endswith("tritonserver")
    assert plain.command(tmp_path)[0].endswith("tritonserver")
