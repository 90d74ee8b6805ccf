"""Local service processes (dev and test tooling): free ports, readiness polling, process-group stop and the
start/stop plumbing `LocalOrthanc`, `LocalTriton` and `stack.LocalStack` share."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ServiceStartError", "free_port", "stop_process_group", "wait_until_ready"]


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
