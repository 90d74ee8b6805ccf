"""Start Orthanc and Triton as local processes: the one-machine demo and the service-tier tests use them.

Both listen on 127.0.0.1 only. Orthanc 1.10 has no option to bind its HTTP or DICOM server to one
address, so its ports are open on every interface; `LocalOrthanc` locks them down instead (docs/security.md,
"Orthanc"): HTTP answers 403 to non-loopback clients (`RemoteAccessAllowed: false`) and 401 without the
credentials (`AuthenticationEnabled`, one registered user with a random password unless one is given); the
DICOM port accepts associations only from the configured modalities (`DicomModalities`, calling AET *and*
IP address checked, called AET checked), C-ECHO/C-FIND/C-MOVE/C-GET from no one else; and an instance
stored again keeps the stored one (`OverwriteInstances: false`).

Triton comes from the `nvidia-pytriton` wheel, which ships `tritonserver` with the Python backend only
(no onnxruntime backend). `LocalTriton` therefore serves each ONNX model
(`platform: "onnxruntime_onnx"`) through a generated Python-backend model that runs onnxruntime on the
CPU, in a shadow copy of the repository: same model names, inputs, outputs, batching and protocol, so
clients (tritonclient gRPC/HTTP) cannot tell the difference. When a `tritonserver` with a real
onnxruntime backend is given (`binary=`/`backend_directory=`), the repository is served as is.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from glioscope_common.allocator import TRITON_MALLOC_TUNABLES, with_malloc_tunables

if TYPE_CHECKING:
    from glioscope_common.dicomweb.client import HttpDicomWeb
    from glioscope_common.dicomweb.orthanc import OrthancRest

__all__ = [
    "DEFAULT_MODALITIES",
    "LOCAL_SCU_AET",
    "ORTHANC_DUPLICATE_AUDIT_LUA",
    "LocalOrthanc",
    "LocalTriton",
    "ServiceStartError",
    "free_port",
    "stop_process_group",
    "wait_until_ready",
    "orthanc_binary",
    "orthanc_modalities",
    "dicomweb_plugin",
    "tritonserver_binary",
]


class ServiceStartError(RuntimeError):
    """A local service did not start; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections of a stopped server in TIME_WAIT must not count, a listener must.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _check_ports_free(name: str, ports: dict[str, int]) -> None:
    """Refuse to start on a busy port: the readiness probe would otherwise find another server there."""
    busy = {k: v for k, v in ports.items() if _port_in_use(v)}
    if busy:
        raise ServiceStartError(f"{name} cannot start: port(s) already in use: {busy}")


def _log_tail(path: Path, lines: int = 25) -> str:
    """Error lines of a log (glog `E...`, Orthanc `E...`, 'error') followed by its last lines."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if re.match(r"^E\d{4}|^E\s", line) or "error" in line.lower()][-15:]
    tail = text[-lines:]
    parts = []
    if errors:
        parts.append("errors:\n" + "\n".join(line[:500] for line in errors))
    parts.append("last lines:\n" + "\n".join(line[:500] for line in tail))
    return "\n".join(parts)


def stop_process_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send `sig` to the process's group, wait `timeout`, then SIGKILL it. The child leads its own
    session (start_new_session=True), so the processes it started (Triton's Python backend stubs,
    Celery's pool, uvicorn's workers) go with it. Shared by these services and `stack.LocalStack`."""
    if proc is None or proc.poll() is not None:
        return

    def signal_group(signal_number: int) -> None:
        try:
            os.killpg(proc.pid, signal_number)
        except (ProcessLookupError, PermissionError):
            proc.send_signal(signal_number)

    try:
        signal_group(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def wait_until_ready(
    name: str, proc: subprocess.Popen[bytes] | None, log_path: Path, ready: Callable[[], bool | str], timeout: float
) -> None:
    """Poll `ready` (True, or a string saying why not yet) until it is True; ServiceStartError with
    the log's tail when the process exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = "not ready"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceStartError(
                f"{name} exited with code {proc.returncode} before it was ready; log {log_path}:\n{_log_tail(log_path)}"
            )
        answer = ready()
        if answer is True:
            return
        last = answer or "not ready"
        time.sleep(0.1)
    raise ServiceStartError(f"{name} not ready after {timeout:.0f} s ({last}); log {log_path}:\n{_log_tail(log_path)}")


class _Process:
    """Common start/stop/context-manager plumbing."""

    name = "service"
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _wait_ready(self, url: str, timeout: float, accept: int = 200, auth: tuple[str, str] | None = None) -> None:
        with httpx.Client(timeout=2.0, auth=auth) as client:

            def ready() -> bool | str:
                try:
                    r = client.get(url)
                except httpx.HTTPError as e:
                    return repr(e)
                return True if r.status_code == accept else f"HTTP {r.status_code} from {url}"

            try:
                wait_until_ready(self.name, self._proc, self.log_path, ready, timeout)
            except ServiceStartError:
                self.stop()
                raise

    def stop(self) -> None:
        stop_process_group(self._proc)
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --------------------------------------------------------------------------------------------- Orthanc


def orthanc_binary() -> Path:
    found = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()), None)
    if not found:
        raise ServiceStartError("the Orthanc binary was not found (Debian: apt-get install orthanc orthanc-dicomweb)")
    return Path(found)


def dicomweb_plugin() -> Path:
    candidates = [
        Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
        Path("/usr/lib/orthanc/plugins/libOrthancDicomWeb.so"),
        Path("/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so"),
    ]
    for c in candidates:
        if c.exists():
            return c
    raise ServiceStartError("the Orthanc DICOMweb plugin was not found (Debian: apt-get install orthanc-dicomweb)")


# The calling AET of this machine's own DICOM tools in the embedded mode (`storescu -aet GLIOSCOPE-SCU
# -aec GLIOSCOPE 127.0.0.1 4242 files…`): the one modality `LocalOrthanc` accepts C-STORE from by default.
LOCAL_SCU_AET = "GLIOSCOPE-SCU"
DEFAULT_MODALITIES: dict[str, dict[str, object]] = {
    "local-scu": {"AET": LOCAL_SCU_AET, "Host": "127.0.0.1", "Port": 104},
}
# What a configured modality may do unless its entry says otherwise: send studies (C-STORE) and check the
# association (C-ECHO); query/retrieve (C-FIND, C-MOVE, C-GET) and storage commitment only when allowed.
_MODALITY_PERMISSIONS = {
    "AllowEcho": True, "AllowStore": True, "AllowFind": False, "AllowFindWorklist": False, "AllowGet": False,
    "AllowMove": False, "AllowStorageCommitment": False,
}
_AET = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # 16 characters of the default repertoire, no backslash


def orthanc_modalities(spec: dict[str, object]) -> dict[str, dict[str, object]]:
    """Orthanc's `DicomModalities` from `{"NAME": {"AET": .., "Host": .., "Port": ..[, "AllowFind": ..]}}`
    (or Orthanc's short form `["AET", "Host", Port]`; keys case-insensitive): each entry checked (AET of 1-16
    characters, Host an IP address since Orthanc compares the peer's address with it when
    `DicomCheckModalityHost` is on, Port 1-65535, default 104) and given the default permissions."""
    out: dict[str, dict[str, object]] = {}
    for name, entry in spec.items():
        if isinstance(entry, (list, tuple)):
            if len(entry) < 2:
                raise ValueError(f"DICOM modality {name!r}: expected [AET, Host, Port]")
            entry = {"AET": entry[0], "Host": entry[1], **({"Port": entry[2]} if len(entry) > 2 else {})}
        if not isinstance(entry, dict):
            raise ValueError(f"DICOM modality {name!r}: expected an object with AET, Host and Port")
        given = {str(k).lower(): v for k, v in entry.items()}
        aet, host, port = str(given.pop("aet", "")).strip(), str(given.pop("host", "")).strip(), given.pop("port", 104)
        if not _AET.fullmatch(aet):
            raise ValueError(f"DICOM modality {name!r}: AET must be 1-16 characters, got {aet!r}")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(
                f"DICOM modality {name!r}: Host must be an IP address (Orthanc checks the peer's address), got {host!r}"
            ) from None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"DICOM modality {name!r}: Port must be 1-65535, got {port!r}")
        permissions = dict(_MODALITY_PERMISSIONS)
        for key, value in given.items():
            canonical = next((k for k in permissions if k.lower() == key), None)
            if canonical is None or not isinstance(value, bool):
                raise ValueError(f"DICOM modality {name!r}: unknown option {key!r} (or not a boolean)")
            permissions[canonical] = value
        out[str(name)] = {"AET": aet, "Host": host, "Port": port, **permissions}
    return out


# Orthanc keeps the stored instance when a second copy of a stored SOP Instance UID arrives
# (OverwriteInstances false) and answers success to the sender, silently. This Lua filter, the chart's own
# file (one copy for both), logs every such copy with its origin; UIDs and addresses only, no patient data,
# each value reduced to safe characters (no forged log lines). LocalOrthanc runs from a checkout.
ORTHANC_DUPLICATE_AUDIT_LUA = Path(__file__).resolve().parents[3] / "charts/glioscope/files/orthanc/duplicate-audit.lua"


class LocalOrthanc(_Process):
    """An Orthanc process with the DICOMweb plugin, storage in `work_dir` (a temp dir by default), locked down
    as in production (module docstring): HTTP needs `auth` (`username`, and `password`, random unless given),
    C-STORE is accepted only from `modalities` (default: AET GLIOSCOPE-SCU on 127.0.0.1).

    >>> with LocalOrthanc(stable_age=2) as orthanc:
    ...     orthanc.dicomweb()          # an HttpDicomWeb with the credentials
    ...     orthanc.settings_env        # GLIOSCOPE_DICOMWEB_URL, _ORTHANC_URL, _ORTHANC_USERNAME, _ORTHANC_PASSWORD
    """

    name = "Orthanc"

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        http_port: int | None = None,
        dicom_port: int | None = None,
        stable_age: int = 10,
        aet: str = "GLIOSCOPE",
        startup_timeout: float = 30.0,
        username: str = "glioscope",
        password: str | None = None,
        modalities: dict[str, object] | None = None,
        extra_config: dict[str, object] | None = None,
    ) -> None:
        self._work_dir_arg = work_dir
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.stable_age = stable_age
        self.aet = aet
        self.startup_timeout = startup_timeout
        if not username or ":" in username:
            raise ValueError("the Orthanc user name must be non-empty and without ':'")
        self.username = username
        self._password = password or secrets.token_urlsafe(24)
        self.modalities = orthanc_modalities(DEFAULT_MODALITIES if modalities is None else modalities)
        self.extra_config = extra_config or {}
        self.work_dir: Path | None = None

    def __repr__(self) -> str:  # no password in reprs (test reports, logs)
        return (f"LocalOrthanc(url={self.url!r}, dicom_port={self.dicom_port}, aet={self.aet!r}, "
                f"username={self.username!r})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        """(username, password) for HTTP basic authentication (httpx's `auth=`)."""
        return (self.username, self._password)

    @property
    def settings_values(self) -> dict[str, object]:
        """The CommonSettings fields that point a service at this Orthanc (`Settings(**orthanc.settings_values)`)."""
        return {"dicomweb_url": self.dicomweb_url, "orthanc_url": self.url, "orthanc_username": self.username,
                "orthanc_password": self._password}

    @property
    def settings_env(self) -> dict[str, str]:
        """The same as GLIOSCOPE_* environment variables, for services started as processes."""
        return {f"GLIOSCOPE_{k.upper()}": str(v) for k, v in self.settings_values.items()}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for Orthanc's REST API (base URL and credentials set)."""
        return httpx.Client(base_url=self.url, auth=self.auth, **kwargs)

    def rest(self, **kwargs: Any) -> "OrthancRest":
        from glioscope_common.dicomweb.orthanc import OrthancRest  # noqa: PLC0415

        return OrthancRest(self.url, auth=self.auth, **kwargs)

    def dicomweb(self, **kwargs: Any) -> "HttpDicomWeb":
        from glioscope_common.dicomweb.client import HttpDicomWeb  # noqa: PLC0415

        return HttpDicomWeb(self.dicomweb_url, auth=self.auth, **kwargs)

    def config(self, work_dir: Path) -> dict[str, object]:
        cfg: dict[str, object] = {
            "Name": "Glioscope",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            # DICOM: only the configured modalities (calling AET and IP address), called AET checked.
            "DicomCheckCalledAet": True,
            "DicomModalities": self.modalities,
            "DicomModalitiesInDatabase": False,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowFindWorklist": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "StorageDirectory": str(work_dir / "storage"),
            "IndexDirectory": str(work_dir / "index"),
            "StorageCompression": False,
            "Plugins": [str(dicomweb_plugin())],
            # HTTP: loopback clients only, and only with the credentials.
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self._password},
            "SslEnabled": False,
            "HttpCompressionEnabled": False,
            "KeepAlive": True,
            "StableAge": self.stable_age,
            # A second copy of a stored SOP Instance UID is discarded (the stored instance is kept) and logged.
            "OverwriteInstances": False,
            "LuaScripts": [str(work_dir / "duplicate-audit.lua")],
            "SaveJobs": False,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        cfg.update(self.extra_config)
        return cfg

    def start(self) -> "LocalOrthanc":
        if self.running:
            return self
        _check_ports_free(self.name, {"HttpPort": self.http_port, "DicomPort": self.dicom_port})
        if self._work_dir_arg is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="glioscope-orthanc-")
            self.work_dir = Path(self._tmp.name)
        else:
            self.work_dir = Path(self._work_dir_arg)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "storage").mkdir(exist_ok=True)
        (self.work_dir / "index").mkdir(exist_ok=True)
        (self.work_dir / "duplicate-audit.lua").write_text(ORTHANC_DUPLICATE_AUDIT_LUA.read_text())
        config_path = self.work_dir / "orthanc.json"
        # The file holds the password: readable by this user only.
        config_path.unlink(missing_ok=True)
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.config(self.work_dir), indent=2))
        self.log_path = self.work_dir / "orthanc.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            self._proc = subprocess.Popen(
                [str(orthanc_binary()), str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.work_dir,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready(self.url + "/system", self.startup_timeout, auth=self.auth)
        system = httpx.get(self.url + "/system", timeout=5, auth=self.auth).json()
        if not self.running or system.get("DicomPort") != self.dicom_port:
            self.stop()
            raise ServiceStartError(f"another server answers on {self.url} (ours exited); log {self.log_path}")
        plugins = httpx.get(self.url + "/plugins", timeout=5, auth=self.auth).json()
        if "dicom-web" not in plugins:
            self.stop()
            raise ServiceStartError(f"Orthanc started without the DICOMweb plugin (plugins: {plugins}); log {self.log_path}")
        return self


# --------------------------------------------------------------------------------------------- Triton


def _pytriton_root() -> Path:
    try:
        import pytriton  # noqa: PLC0415
    except ImportError as e:
        raise ServiceStartError("tritonserver comes from the nvidia-pytriton wheel: pip install nvidia-pytriton") from e
    return Path(pytriton.__file__).resolve().parent


def tritonserver_binary() -> Path:
    """The `tritonserver` shipped in the nvidia-pytriton wheel."""
    binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    if not binary.exists():
        raise ServiceStartError(f"nvidia-pytriton is installed but {binary} is missing")
    return binary


_PYTHON_MODEL = '''"""Generated by glioscope_common.local_services: serves an ONNX model with onnxruntime (CPU)."""
import json

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_PATH = {onnx_path!r}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.outputs = [o["name"] for o in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = {threads}
        self.session = ort.InferenceSession(ONNX_PATH, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def execute(self, requests):
        # Dynamic batching hands over several requests: run them as one batch, split the result.
        feeds = {{name: [] for name in self.inputs}}
        sizes = []
        for request in requests:
            for name in self.inputs:
                feeds[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes.append(feeds[self.inputs[0]][-1].shape[0])
        # One request (the usual case on a CPU): its tensor as it is in the stub's shared memory, no copy.
        batch = {{name: arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0) for name, arrays in feeds.items()}}
        results = self.session.run(self.outputs, batch)
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(r[start:start + size])) for name, r in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
'''


def _shadow_repository(source: Path, dest: Path, model_config_name: str | None, threads: int) -> None:
    """Copy `source` into `dest`, serving ONNX models through the Python backend (see module doc)."""
    for model_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        config_file = None
        if model_config_name and (model_dir / "configs" / f"{model_config_name}.pbtxt").exists():
            config_file = model_dir / "configs" / f"{model_config_name}.pbtxt"
        elif (model_dir / "config.pbtxt").exists():
            config_file = model_dir / "config.pbtxt"
        if config_file is None:
            continue
        config = config_file.read_text()
        target = dest / model_dir.name
        target.mkdir(parents=True)
        if re.search(r'platform\s*:\s*"onnxruntime_onnx"', config) or re.search(r'backend\s*:\s*"onnxruntime"', config):
            config = re.sub(r'platform\s*:\s*"onnxruntime_onnx"', 'backend: "python"', config)
            config = re.sub(r'backend\s*:\s*"onnxruntime"', 'backend: "python"', config)
            # GPU instances, TensorRT accelerators and default_model_filename do not apply here.
            config = re.sub(r"KIND_GPU", "KIND_CPU", config)
            config = re.sub(r"\n\s*gpus\s*:\s*\[[^\]]*\]", "", config)
            config = _drop_block(config, "optimization")
            config = re.sub(r'default_model_filename\s*:\s*"[^"]*"', "", config)
            for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
                onnx_files = sorted(version_dir.glob("*.onnx"))
                if not onnx_files:
                    continue
                onnx = version_dir / "model.onnx" if (version_dir / "model.onnx").exists() else onnx_files[0]
                (target / version_dir.name).mkdir()
                (target / version_dir.name / "model.py").write_text(
                    _PYTHON_MODEL.format(onnx_path=str(onnx.resolve()), threads=threads)
                )
        else:
            for item in model_dir.iterdir():
                if item.name in ("config.pbtxt", "configs"):
                    continue
                (target / item.name).symlink_to(item.resolve())
        (target / "config.pbtxt").write_text(config)


def _drop_block(text: str, key: str) -> str:
    """Remove a `key { ... }` block (balanced braces) from a pbtxt string."""
    while True:
        m = re.search(rf"\b{key}\s*:?\s*\{{", text)
        if not m:
            return text
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        text = text[: m.start()] + text[i + 1 :]


class LocalTriton(_Process):
    """A tritonserver process (from the nvidia-pytriton wheel) serving `model_repository` on free ports.

    `model_config_name="cpu"` selects `<model>/configs/cpu.pbtxt` where a model has one (Triton's
    custom model configuration; emulated in the shadow repository since the wheel's Triton serves
    ONNX through the Python backend anyway), else `config.pbtxt`.
    """

    name = "Triton"

    def __init__(
        self,
        model_repository: Path,
        model_config_name: str | None = "cpu",
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        startup_timeout: float = 120.0,
        threads: int = 1,
        log_verbose: int = 0,
        binary: Path | None = None,
        backend_directory: Path | None = None,
        nice: int = 0,
    ) -> None:
        self.binary = Path(binary) if binary else None
        # On one machine with the platform: the niceness of the batch worker that feeds it, so that
        # neither of the two starves the other while the interactive services keep priority.
        self.nice = int(nice)
        self.backend_directory = Path(backend_directory) if backend_directory else None
        self.model_repository = Path(model_repository).resolve()
        self.model_config_name = model_config_name
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.startup_timeout = startup_timeout
        self.threads = threads
        self.log_verbose = log_verbose
        self.served_repository: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def native_onnxruntime(self) -> bool:
        """True when the backend directory has Triton's onnxruntime backend (a full Triton install)."""
        return self.backend_directory is not None and (self.backend_directory / "onnxruntime").is_dir()

    def command(self, backend_directory: Path) -> list[str]:
        assert self.served_repository is not None
        cmd = ["nice", "-n", str(self.nice)] if self.nice else []
        cmd += [
            str(self.binary or tritonserver_binary()),
            f"--model-repository={self.served_repository}",
            f"--backend-directory={backend_directory}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.native_onnxruntime:
            if self.model_config_name:
                cmd.append(f"--model-config-name={self.model_config_name}")
        else:
            cmd += [
                f"--cache-directory={_pytriton_root() / 'tritonserver' / 'caches'}",
                f"--backend-config=python,shm-default-byte-size={256 * 1024 * 1024}",
                f"--backend-config=python,shm-growth-byte-size={128 * 1024 * 1024}",
            ]
        return cmd

    def environment(self) -> dict[str, str]:
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        lib_paths = [libdir]
        try:
            lib_paths.append(str(_pytriton_root().parent / "nvidia_pytriton.libs"))
        except ServiceStartError:
            pass
        env = os.environ.copy()
        if env.get("LD_LIBRARY_PATH"):
            lib_paths.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(p for p in lib_paths if p)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        # The stub embeds libpython; make this venv's packages (numpy, onnxruntime) importable there.
        paths = [p for p in sys.path if p and Path(p).is_dir()]
        env["PYTHONPATH"] = ":".join(paths)
        env.setdefault("OMP_NUM_THREADS", str(self.threads))
        # As the chart's Triton container (allocator.py).
        return with_malloc_tunables(env, TRITON_MALLOC_TUNABLES)

    def _python_stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = _pytriton_root() / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise ServiceStartError(f"no Triton Python backend stub for Python {version} in the pytriton wheel")
        return stub

    def start(self) -> "LocalTriton":
        if self.running:
            return self
        _check_ports_free(self.name, {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port})
        if not self.model_repository.is_dir():
            raise ServiceStartError(f"model repository {self.model_repository} does not exist")
        self._tmp = tempfile.TemporaryDirectory(prefix="glioscope-triton-")
        work = Path(self._tmp.name)
        if self.native_onnxruntime:
            assert self.backend_directory is not None
            self.served_repository = self.model_repository
            backend_directory = self.backend_directory
        else:
            self.served_repository = work / "model_repository"
            self.served_repository.mkdir()
            _shadow_repository(self.model_repository, self.served_repository, self.model_config_name, self.threads)
            # The Python backend looks for its stub next to libtriton_python.so: give it a backend
            # directory holding the wheel's backend plus the stub built for this interpreter's version.
            backend_directory = work / "backends"
            python_backend = backend_directory / "python"
            python_backend.mkdir(parents=True)
            src = self.backend_directory / "python" if self.backend_directory else _pytriton_root() / "tritonserver" / "backends" / "python"
            for item in src.iterdir():
                if item.is_file():
                    (python_backend / item.name).symlink_to(item)
            shutil.copy2(self._python_stub(), python_backend / "triton_python_backend_stub")
        self.log_path = work / "triton.log"
        cmd = self.command(backend_directory)
        self.command_line = cmd
        log = open(self.log_path, "ab")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                cwd=work,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready(self.http_url + "/v2/health/ready", self.startup_timeout)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None and self.log_path.exists():
            # keep the log readable after the temp dir goes away
            self.last_log = _log_tail(self.log_path, 200)
        super().stop()
