"""A small HTTP server for the OHIF interoperability test: OHIF's built app (`@ohif/app`'s dist/) with
our app-config.js, and `/dicom-web/...` forwarded to a DICOMweb root with credentials added, so the
browser sees one origin (no CORS) and never holds a credential.

Only GET and HEAD are served: OHIF reads (QIDO-RS, WADO-RS, metadata, bulk data); nothing is stored.
"""

from __future__ import annotations

import mimetypes
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

FORWARDED_REQUEST_HEADERS = ("accept", "range")
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-range", "etag", "last-modified")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".css": "text/css", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".html": "text/html; charset=utf-8"}


@dataclass
class OhifServer:
    """Serves `dist` (index.html for any path that is not a file: OHIF routes in the browser), `config_js`
    as /app-config.js, and forwards /dicom-web/<path>?<query> to `upstream_root`/<path>?<query> with
    `upstream_headers` (credentials) added. The browser's Host is passed on, so a DICOMweb server behind a
    proxy that honours it (the gateway sends it to Orthanc as `Forwarded`) writes BulkDataURIs on this
    origin. Every forwarded request is kept in `requests` as (status, path)."""

    dist: Path
    config_js: bytes
    upstream_root: str
    upstream_headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=60, headers=self.upstream_headers)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ohif-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OhifServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def __enter__(self) -> OhifServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        dist = self.dist.resolve()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                if path == "/dicom-web" or path.startswith("/dicom-web/"):
                    self._forward()
                elif path == "/app-config.js":
                    self._send(200, server.config_js, {"content-type": TYPES[".js"]})
                else:
                    self._static(path)

            def _static(self, path: str) -> None:
                target = (dist / path.lstrip("/")).resolve()
                if not target.is_relative_to(dist) or not target.is_file():
                    if Path(path).suffix:  # a missing asset, not an OHIF route
                        self._send(404, b"not found", {"content-type": "text/plain"})
                        return
                    target = dist / "index.html"
                kind = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self._send(200, target.read_bytes(), {"content-type": kind})

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                url = server.upstream_root.rstrip("/") + parts.path[len("/dicom-web"):]
                if parts.query:
                    url += "?" + parts.query
                headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
                headers["host"] = self.headers.get("host", "")
                try:
                    upstream = server._http.request(self.command, url, headers=headers)
                except httpx.HTTPError as exc:
                    server.requests.append((502, parts.path))
                    self._send(502, f"upstream failed: {type(exc).__name__}".encode(), {"content-type": "text/plain"})
                    return
                server.requests.append((upstream.status_code, parts.path))
                kept = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
                self._send(upstream.status_code, upstream.content, kept)

        return Handler
