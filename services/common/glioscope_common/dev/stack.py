"""Start Glioscope's own services as local processes: the one-machine demo and the end-to-end tests.

Each service runs as it would in a container (uvicorn / celery), configured only through GLIOSCOPE_*
environment variables, so that the tests exercise the production code path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from glioscope_common.dev.processes import free_port, stop_process_group, wait_until_ready


@dataclass
class ServiceProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str | None = None
    ready_marker: str | None = None  # a log line that says the process is ready (no health URL)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _ready(self) -> bool | str:
        if self.ready_marker is not None:
            try:
                return self.ready_marker in self.log_path.read_text(errors="replace") or "no ready line in the log yet"
            except OSError:
                return "no log yet"
        if self.health_url is None:
            return True
        try:
            status = httpx.get(self.health_url, timeout=2).status_code
        except httpx.HTTPError as exc:
            return repr(exc)
        return True if status == 200 else f"HTTP {status} from {self.health_url}"

    def wait_healthy(self, timeout_s: float = 60) -> None:
        wait_until_ready(self.name, self.process, self.log_path, self._ready, timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15) -> None:
        stop_process_group(self.process, sig, timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, for fault tests)."""
        self.stop(signal.SIGKILL)


def uvicorn_command(app: str, port: int, workers: int = 1) -> list[str]:
    """uvicorn as in the containers: `--no-proxy-headers`, so that `request.client` is the TCP peer and
    only the gateway's GLIOSCOPE_TRUSTED_PROXIES decide whether X-Forwarded-For is believed (uvicorn's
    default would rewrite the client from X-Forwarded-For for any loopback peer)."""
    return [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--no-proxy-headers", "--log-level", "warning", "--no-access-log"] + (
                ["--workers", str(workers)] if workers > 1 else [])


@dataclass
class LocalStack:
    """gateway, reporting, nifti and one Celery worker, sharing one environment."""

    env: dict[str, str]
    log_dir: Path
    worker_queue: str = "cpu"
    worker_concurrency: int = 1
    # Gateway processes answering the API. Above 1: `gateway_workers` uvicorn workers with the Orthanc
    # watcher off, plus one watcher process that migrates first (the chart's migrations Job). With
    # SQLite exactly one process may watch (it leads alone); with Postgres the watcher process stands
    # for election like every gateway pod in the chart (glioscope_gateway.leader) and wins it alone.
    gateway_workers: int = 1
    # The Celery worker's /metrics port (GLIOSCOPE_METRICS_PORT; 0: none). The prefork children write
    # their metrics to <log_dir>/../worker-metrics (PROMETHEUS_MULTIPROC_DIR), the main process serves them.
    worker_metrics_port: int = 0
    # The inference worker's niceness. On one machine the batch worker yields the cores to the
    # interactive services (in Kubernetes it runs in its own pods with its own CPU).
    worker_nice: int = 10
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def _uvicorn(self, name: str, app: str, port: int, env: Mapping[str, str], workers: int = 1) -> ServiceProcess:
        command = uvicorn_command(app, port, workers)
        return ServiceProcess(name, command, dict(env), self.log_dir / f"{name}.log", f"http://127.0.0.1:{port}/healthz")

    def worker_process(self) -> ServiceProcess:
        command = ["nice", "-n", str(self.worker_nice)] if self.worker_nice else []
        command += [sys.executable, "-m", "celery", "-A", "glioscope_inference.worker", "worker", "-Q", self.worker_queue,
                   "-c", str(self.worker_concurrency), "--pool", "prefork", "--loglevel", "INFO",
                   # A fresh node name per start: a killed worker's exclusive control queue may linger.
                   "-n", f"worker-{self.worker_queue}-{uuid.uuid4().hex[:6]}@%h",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]
        log_path = self.log_dir / "worker.log"
        log_path.unlink(missing_ok=True)
        env = self._service_env()
        if self.worker_metrics_port:
            env["GLIOSCOPE_METRICS_PORT"] = str(self.worker_metrics_port)
            metrics_dir = self.log_dir.parent / "worker-metrics"
            metrics_dir.mkdir(parents=True, exist_ok=True)  # prometheus-client writes there from the import on
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        return ServiceProcess("worker", command, env, log_path, ready_marker=" ready.")

    def _service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env.update({
            "GLIOSCOPE_NIFTI_URL": f"http://127.0.0.1:{self.ports['nifti']}",
            "GLIOSCOPE_REPORTING_URL": f"http://127.0.0.1:{self.ports['reporting']}",
            "GLIOSCOPE_JOB_QUEUE": self.worker_queue,
        })
        return env

    def start(self) -> None:
        names = ("gateway", "reporting", "nifti") + (("watcher",) if self.gateway_workers > 1 else ())
        for name in names:
            self.ports.setdefault(name, free_port())
        env = self._service_env()
        gateway = "glioscope_gateway.main:create_app"
        self.processes = {}
        if self.gateway_workers > 1:
            # First the single watcher process (it migrates), then the API workers, which neither
            # migrate nor watch: several at once would race on both.
            self.processes["watcher"] = self._uvicorn("watcher", gateway, self.ports["watcher"], env)
        api_env = env if self.gateway_workers == 1 else {
            **env, "GLIOSCOPE_ORTHANC_WATCHER": "false", "GLIOSCOPE_AUTO_MIGRATE": "false"}
        self.processes.update({
            "nifti": self._uvicorn("nifti", "glioscope_nifti.main:create_app", self.ports["nifti"], env),
            "reporting": self._uvicorn("reporting", "glioscope_reporting.main:create_app", self.ports["reporting"], env),
            "gateway": self._uvicorn("gateway", gateway, self.ports["gateway"], api_env, self.gateway_workers),
            "worker": self.worker_process(),
        })
        try:
            if "watcher" in self.processes:
                self.processes["watcher"].start()
                self.processes["watcher"].wait_healthy()
            for process in self.processes.values():
                if process.process is None:
                    process.start()
            for process in self.processes.values():
                process.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def restart_worker(self) -> None:
        self.processes["worker"].stop()
        self.processes["worker"] = self.worker_process()
        self.processes["worker"].start()
        self.processes["worker"].wait_healthy()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{p.log_tail()}" for name, p in self.processes.items())
