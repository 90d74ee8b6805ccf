"""Result routing: SEG, SR and Encapsulated PDF from our PACS to the configured destinations (C-STORE with
dcmtk's storescu, or STOW-RS), with retries and exponential backoff.

Finding results: Orthanc's change feed ("StableSeries", from its own cursor) — a SEG, SR or DOC series of a
registered study becomes one `Delivery` row per destination that wants it (`Destination.on`/`what`). The row
is unique per (destination, SOP Instance UID), so a result seen twice or resent is never a second delivery;
a sent row is never sent again, and a retry after an unclear failure resends the same SOP Instance UID, which
a PACS keeps once (Orthanc: OverwriteInstances false). Runs in the watcher's leader only (one sender).
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import read_scope, session_scope, utcnow
from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.errors import GlioscopeError, NotFound, UpstreamUnavailable
from glioscope_common.records.models import Delivery, DeliveryState, Study
from glioscope_gateway.change_cursor import read_cursor, save_cursor
from glioscope_gateway.routing.config import Destination

logger = logging.getLogger("glioscope.gateway.routing")
CURSOR = "routing-changes"
KIND_BY_MODALITY = {"SEG": "seg", "SR": "sr", "DOC": "pdf"}
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base, 2·base, 4·base … capped at max."""
    if attempts < 1:
        return 0.0
    return float(min(max_s, base_s * 2 ** min(attempts - 1, 60)))


class DeliveryError(Exception):
    pass


def send_dimse(destination: Destination, data: bytes) -> None:
    """C-STORE one instance with dcmtk's storescu (-R: only the instance's own SOP class proposed)."""
    storescu = shutil.which("storescu")
    if storescu is None:
        raise DeliveryError("storescu (dcmtk) is not installed")
    timeout = str(max(1, int(destination.timeout_s)))
    with tempfile.TemporaryDirectory(prefix="glioscope-route-") as tmp:
        path = Path(tmp) / "instance.dcm"
        path.write_bytes(data)
        try:
            done = subprocess.run(
                [storescu, "-R", "-aet", destination.calling_aet, "-aec", destination.aet, "-to", timeout, "-ta", timeout,
                 "-td", timeout, destination.host, str(destination.port), str(path)],
                capture_output=True, text=True, timeout=destination.timeout_s * 3 + 5,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeliveryError(f"C-STORE to {destination.aet}@{destination.host}:{destination.port} timed out") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or "E: " in output or "W: Store SCP Status" in output:
        last = output.splitlines()[-3:] if output else []
        raise DeliveryError(f"C-STORE to {destination.aet}@{destination.host}:{destination.port} failed "
                            f"(exit {done.returncode}): {' | '.join(last)}"[:500])


def send_dicomweb(destination: Destination, data: bytes, study_instance_uid: str) -> None:
    with HttpDicomWeb(destination.url, auth=destination.auth, timeout=destination.timeout_s, stow_concurrency=1,
                      attempts=1) as client:
        try:
            result = client.store_instances([data], study_instance_uid)
        except GlioscopeError as exc:
            raise DeliveryError(f"STOW-RS to {destination.name} failed: {exc.detail}"[:500]) from exc
    if result.failed_sop_instance_uids or not result.stored_sop_instance_uids:
        raise DeliveryError(f"STOW-RS to {destination.name}: the instance was refused ({result.warnings})"[:500])


Sender = Callable[[Destination, bytes, str], None]


def default_sender(destination: Destination, data: bytes, study_instance_uid: str) -> None:
    if destination.protocol == "dimse":
        send_dimse(destination, data)
    else:
        send_dicomweb(destination, data, study_instance_uid)


class ResultRouter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        orthanc: OrthancRest,
        destinations: Sequence[Destination],
        *,
        retry_base_s: float = 30.0,
        retry_max_s: float = 3600.0,
        max_attempts: int = 10,
        batch: int = 50,
        sender: Sender = default_sender,
    ) -> None:
        self._sessions = sessions
        self._orthanc = orthanc
        self.destinations = {d.name: d for d in destinations}
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self.batch = batch
        self._send = sender

    # -- finding results -------------------------------------------------------------------------
    def _cursor(self) -> int | None:
        return read_cursor(self._sessions, CURSOR)

    def _save_cursor(self, last: int) -> None:
        save_cursor(self._sessions, CURSOR, last)

    def discover(self) -> int:
        """Read the change feed from the cursor; queue deliveries of new results. The first run starts at the
        feed's current end: turning routing on does not send the past (resend those by hand if wanted)."""
        since = self._cursor()
        if since is None:
            last = int(self._orthanc._request("GET", "/changes", params={"last": ""}).json().get("Last", 0))
            self._save_cursor(last)
            since = last
        queued = 0
        while True:
            changes, last, done = self._orthanc.changes(since)
            for change in changes:
                if change.get("ChangeType") == "StableSeries":
                    try:
                        queued += self.queue_series(str(change["ID"]))
                    except NotFound:
                        continue  # deleted since
            if last != since:
                self._save_cursor(last)
                since = last
            if done or not changes:
                return queued

    def queue_series(self, orthanc_series_id: str) -> int:
        series = self._orthanc._request("GET", f"/series/{orthanc_series_id}").json()
        kind = KIND_BY_MODALITY.get(str(series.get("MainDicomTags", {}).get("Modality", "")).upper())
        if kind is None:
            return 0
        study_uid = self._orthanc.study_dicom_uid(series["ParentStudy"])
        with read_scope(self._sessions) as session:
            if session.scalars(select(Study.id).where(Study.study_instance_uid == study_uid)).first() is None:
                return 0  # not a study Glioscope registered
        series_uid = str(series["MainDicomTags"].get("SeriesInstanceUID", ""))
        queued = 0
        for instance_id in series.get("Instances", []):
            data = self._orthanc._request("GET", f"/instances/{instance_id}/file").content
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            verified = str(ds.get("VerificationFlag", "")).upper() == "VERIFIED"
            sop_uid = str(ds.SOPInstanceUID)
            for destination in self.destinations.values():
                if kind not in destination.what:
                    continue
                if destination.on == "completed" or (kind in ("sr", "pdf") and verified):
                    queued += self._queue(destination.name, study_uid, series_uid, sop_uid, kind, instance_id)
            if kind == "sr" and verified:
                queued += self._queue_cited_segs(ds, study_uid)
        return queued

    def _queue_cited_segs(self, sr: pydicom.Dataset, study_uid: str) -> int:
        """A signed SR: the SEG it cites (evidence) goes to the `on: signed` destinations that want SEGs."""
        wanting = [d.name for d in self.destinations.values() if d.on == "signed" and "seg" in d.what]
        if not wanting:
            return 0
        queued = 0
        for study_item in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
            for series_item in study_item.get("ReferencedSeriesSequence", []):
                for ref in series_item.get("ReferencedSOPSequence", []):
                    if str(ref.get("ReferencedSOPClassUID", "")) != SEGMENTATION_STORAGE:
                        continue
                    sop_uid = str(ref.ReferencedSOPInstanceUID)
                    found = self._orthanc._request("POST", "/tools/lookup", content=sop_uid.encode()).json()
                    instance_id = next((str(i["ID"]) for i in found if i.get("Type") == "Instance"), None)
                    if instance_id is None:
                        logger.warning("a signed SR cites a SEG the PACS does not hold")
                        continue
                    for name in wanting:
                        queued += self._queue(name, study_uid, str(series_item.SeriesInstanceUID), sop_uid, "seg", instance_id)
        return queued

    def _queue(self, destination: str, study_uid: str, series_uid: str, sop_uid: str, kind: str, instance_id: str) -> int:
        try:
            with session_scope(self._sessions) as session:
                exists = session.scalars(select(Delivery.id).where(
                    Delivery.destination == destination, Delivery.sop_instance_uid == sop_uid)).first()
                if exists is not None:
                    return 0
                session.add(Delivery(destination=destination, study_instance_uid=study_uid, series_instance_uid=series_uid,
                                     sop_instance_uid=sop_uid, kind=kind, orthanc_instance_id=instance_id,
                                     state=DeliveryState.queued, attempts=0, next_attempt_at=utcnow()))
        except IntegrityError:
            return 0  # queued concurrently
        return 1

    # -- sending ----------------------------------------------------------------------------------
    def deliver_due(self, now: datetime | None = None) -> int:
        """Send what is due; returns how many were sent. After a failure, the destination's other due
        deliveries wait for the same next attempt (a PACS that is down is not called once per instance)."""
        now = now or utcnow()
        with read_scope(self._sessions) as session:
            due = session.scalars(
                select(Delivery.id)
                .where(Delivery.state.in_([DeliveryState.queued, DeliveryState.failed]),
                       Delivery.next_attempt_at.is_not(None), Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at, Delivery.created_at).limit(self.batch)
            ).all()
        sent = 0
        postponed: dict[str, datetime | None] = {}
        for delivery_id in due:
            with session_scope(self._sessions) as session:
                delivery = session.get(Delivery, delivery_id)
                if delivery is None or delivery.state == DeliveryState.sent:
                    continue
                if delivery.destination in postponed:
                    delivery.next_attempt_at = postponed[delivery.destination]
                    continue
                destination = self.destinations.get(delivery.destination)
                error: str | None = None
                if destination is None:
                    error = f"destination {delivery.destination!r} is no longer configured"
                else:
                    try:
                        data = self._orthanc._request("GET", f"/instances/{delivery.orthanc_instance_id}/file").content
                        self._send(destination, data, delivery.study_instance_uid)
                    except (DeliveryError, GlioscopeError, OSError) as exc:
                        error = str(getattr(exc, "detail", "") or exc)[:500]
                delivery.attempts += 1
                if error is None:
                    delivery.state = DeliveryState.sent
                    delivery.sent_at = utcnow()
                    delivery.next_attempt_at = None
                    delivery.last_error = None
                    sent += 1
                    continue
                delivery.state = DeliveryState.failed
                delivery.last_error = error
                delivery.next_attempt_at = (
                    utcnow() + timedelta(seconds=backoff_s(delivery.attempts, self.retry_base_s, self.retry_max_s))
                    if delivery.attempts < self.max_attempts and destination is not None else None
                )
                postponed[delivery.destination] = delivery.next_attempt_at
                logger.warning("delivery failed", extra={"destination": delivery.destination, "attempts": delivery.attempts})
        return sent

    def run_once(self) -> None:
        self.discover()
        self.deliver_due()

    # -- the admin's view -----------------------------------------------------------------------
    def list(self, state: DeliveryState | None = None, study_instance_uid: str | None = None,
             limit: int = 200, offset: int = 0) -> Sequence[Delivery]:
        with read_scope(self._sessions) as session:
            query = select(Delivery)
            if state is not None:
                query = query.where(Delivery.state == state)
            if study_instance_uid:
                query = query.where(Delivery.study_instance_uid == study_instance_uid)
            return session.scalars(query.order_by(Delivery.created_at.desc()).limit(limit).offset(offset)).all()

    def resend(self, delivery_id: str) -> Delivery:
        """Due now. A delivery already sent stays as it is (no second copy)."""
        with session_scope(self._sessions) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                raise NotFound("no such delivery")
            if delivery.state != DeliveryState.sent:
                delivery.state = DeliveryState.queued
                delivery.next_attempt_at = utcnow()
            session.flush()
            session.expunge(delivery)
            return delivery


class RoutingLoop:
    """Runs the router every `interval_s` while this replica leads the watcher (glioscope_gateway.leader)."""

    def __init__(self, router: ResultRouter, interval_s: float, is_leader: Callable[[], bool]) -> None:
        self.router = router
        self._interval_s = interval_s
        self._is_leader = is_leader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="result-router", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._is_leader():
                try:
                    self.router.run_once()
                except (GlioscopeError, UpstreamUnavailable, OSError):
                    logger.warning("routing cycle failed; retrying", exc_info=True)
                except Exception:
                    logger.exception("routing cycle failed")
            self._stop.wait(self._interval_s)
