"""Orthanc as a local process (dev and test tooling): the one-machine demo and the service-tier tests use it.

It listens on 127.0.0.1 only. Orthanc 1.10 has no option to bind its HTTP or DICOM server to one
address, so its ports are open on every interface; `LocalOrthanc` locks them down instead (docs/security.md,
"Orthanc"): HTTP answers 403 to non-loopback clients (`RemoteAccessAllowed: false`) and 401 without the
credentials (`AuthenticationEnabled`, one registered user with a random password unless one is given); the
DICOM port accepts associations only from the configured modalities (`DicomModalities`, calling AET *and*
IP address checked, called AET checked), C-ECHO/C-FIND/C-MOVE/C-GET from no one else; and an instance
stored again keeps the stored one (`OverwriteInstances: false`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from glioscope_common.dev.processes import ServiceStartError, _check_ports_free, _Process, free_port

if TYPE_CHECKING:
    from glioscope_common.dicomweb.client import HttpDicomWeb
    from glioscope_common.dicomweb.orthanc import OrthancRest

__all__ = [
    "DEFAULT_MODALITIES",
    "LOCAL_SCU_AET",
    "ORTHANC_DUPLICATE_AUDIT_LUA",
    "LocalOrthanc",
    "dicomweb_plugin",
    "orthanc_binary",
    "orthanc_modalities",
]


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
ORTHANC_DUPLICATE_AUDIT_LUA = Path(__file__).resolve().parents[4] / "charts/glioscope/files/orthanc/duplicate-audit.lua"


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
