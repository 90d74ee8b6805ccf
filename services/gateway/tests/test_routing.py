"""Result routing and processing rules (glioscope_gateway.routing).

Unit: the rule matcher and the backoff schedule. Service tier: the router against two real Orthancs — ours
and a second one as the hospital PACS ("HOSPITAL-PACS", its own ports and AE title) — over C-STORE (dcmtk's
storescu) and STOW-RS: delivered, failed and listed while the PACS is down, delivered once after it is back.
The whole platform with a real segmentation: tests/e2e/test_routing.py."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from glioscope_common.db import make_engine, make_session_factory, session_scope
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.testing import require_executable
from glioscope_common.records.migrate import migrate
from glioscope_common.records.models import Delivery, DeliveryState, Study, StudyStatus
from glioscope_gateway.routing.config import Destination, ProcessingRule
from glioscope_gateway.routing.rules import RuleSet, StudyFacts
from glioscope_gateway.routing.service import ResultRouter, backoff_s

PACS_AET = "HOSPITAL-PACS"
OUR_AET = "GLIOSCOPE"


# -- unit: rules ---------------------------------------------------------------------------------------
FACTS = StudyFacts(calling_aet="MR-SCANNER-1", study_description="MR Brain with contrast", project="neuro",
                   modalities=("MR",), series_descriptions=("t1_mprage", "AX FLAIR"))


def test_no_rules_process_everything() -> None:
    assert RuleSet([]).decide(FACTS).process
    assert not RuleSet([]).configured


@pytest.mark.parametrize(("rule", "expected"), [
    ({"calling_aet": "mr-scanner-1"}, True),  # AE titles case-insensitive
    ({"calling_aet": ["CT-1", "MR-SCANNER-2"]}, False),
    ({"modality": "MR"}, True),
    ({"modality": ["CT"]}, False),
    ({"study_description": "brain"}, True),  # searched, case-insensitive
    ({"study_description": "^brain"}, False),
    ({"series_description": "flair$"}, True),  # any series
    ({"series_description": "dwi"}, False),
    ({"project": "neuro"}, True),
    ({"project": "oncology"}, False),
    ({"modality": "MR", "study_description": "spine"}, False),  # every criterion must hold
    ({"modality": "MR", "calling_aet": "MR-SCANNER-1", "study_description": "brain", "project": "neuro"}, True),
])
def test_rule_criteria(rule: dict, expected: bool) -> None:
    assert RuleSet([ProcessingRule(**rule)]).decide(FACTS).process is expected


def test_first_matching_rule_decides_and_excludes() -> None:
    rules = RuleSet([ProcessingRule(name="no-research", study_description="research", process=False),
                     ProcessingRule(name="brains", study_description="brain")])
    assert rules.decide(FACTS) .rule == "brains"
    research = StudyFacts(study_description="Research brain", modalities=("MR",), project="default")
    decision = rules.decide(research)
    assert not decision.process and "no-research" in decision.reason


def test_a_study_no_rule_matches_says_why() -> None:
    decision = RuleSet([ProcessingRule(modality="CT")]).decide(FACTS)
    assert not decision.process
    assert "no processing rule matched" in decision.reason and "MR-SCANNER-1" in decision.reason
    assert "Brain" in decision.reason  # the description, never patient data


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        ProcessingRule(study_description="(unclosed")
    with pytest.raises(ValueError):
        ProcessingRule(modality="MR", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Destination(name="x", protocol="dimse", host="10.0.0.1", aet="A" * 17)
    with pytest.raises(ValueError):
        Destination(name="x", protocol="dicomweb", url="ftp://pacs")


# -- unit: backoff ------------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 30, 3600) for n in range(0, 10)] == [0, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff_s(10_000, 1, 60) == 60  # no overflow


# -- service tier: two real Orthancs ------------------------------------------------------------------
def _file(ds: pydicom.Dataset) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def result_instances(study_uid: str) -> dict[str, bytes]:
    """A minimal SEG, a signed (VERIFIED) SR citing it, and a signed Encapsulated PDF of one study."""
    def base(modality: str, sop_class: str) -> pydicom.Dataset:
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
        ds.Modality, ds.PatientID, ds.PatientName = modality, "ROUTE01", "Route^Test"
        ds.SeriesNumber, ds.InstanceNumber = 900, 1
        return ds
    seg = base("SEG", "1.2.840.10008.5.1.4.1.1.66.4")
    sr = base("SR", "1.2.840.10008.5.1.4.1.1.88.33")
    sr.VerificationFlag, sr.CompletionFlag = "VERIFIED", "COMPLETE"
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = seg.SOPClassUID, seg.SOPInstanceUID
    series = pydicom.Dataset()
    series.SeriesInstanceUID, series.ReferencedSOPSequence = seg.SeriesInstanceUID, [ref]
    evidence = pydicom.Dataset()
    evidence.StudyInstanceUID, evidence.ReferencedSeriesSequence = study_uid, [series]
    sr.CurrentRequestedProcedureEvidenceSequence = [evidence]
    pdf = base("DOC", "1.2.840.10008.5.1.4.1.1.104.1")
    pdf.VerificationFlag = "VERIFIED"
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    return {"seg": _file(seg), "sr": _file(sr), "pdf": _file(pdf)}


def pacs_instances(pacs: LocalOrthanc) -> int:
    with pacs.client(timeout=10) as client:
        return int(client.get("/statistics").json()["CountInstances"])


@pytest.fixture()
def two_orthancs(tmp_path: Path):  # type: ignore[no-untyped-def]
    require_executable("storescu", "dcmtk")
    ours = LocalOrthanc(tmp_path / "ours", stable_age=1)
    pacs = LocalOrthanc(tmp_path / "pacs", aet=PACS_AET, stable_age=1,
                        modalities={"glioscope": {"AET": OUR_AET, "Host": "127.0.0.1", "Port": 104}})
    ours.start()
    pacs.start()
    try:
        yield ours, pacs
    finally:
        pacs.stop()
        ours.stop()


def _sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/records.db"
    migrate(url)
    return make_session_factory(make_engine(url))


def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("protocol", ["dimse", "dicomweb"])
def test_results_reach_the_pacs_once_even_after_it_was_down(two_orthancs, tmp_path: Path, protocol: str) -> None:  # type: ignore[no-untyped-def]
    ours, pacs = two_orthancs
    sessions = _sessions(tmp_path)
    study_uid = generate_uid()
    with session_scope(sessions) as session:
        session.add(Study(study_instance_uid=study_uid, status=StudyStatus.ready))
    if protocol == "dimse":
        destination = Destination(name="pacs", protocol="dimse", aet=PACS_AET, host="127.0.0.1", port=pacs.dicom_port,
                                  calling_aet=OUR_AET, on="completed", what=["seg"], timeout_s=5)
    else:
        destination = Destination(name="pacs", protocol="dicomweb", url=pacs.dicomweb_url, username=pacs.auth[0],
                                  password=pacs.auth[1], on="completed", what=["seg"], timeout_s=5)
    signed = destination.model_copy(update={"name": "archive", "on": "signed", "what": ["seg", "sr", "pdf"]})
    router = ResultRouter(sessions, ours.rest(), [destination, signed], retry_base_s=0.5, retry_max_s=2, max_attempts=20)
    router.discover()  # the cursor starts at the feed's end: nothing of the past is sent

    instances = result_instances(study_uid)
    ours.dicomweb().store_instances([instances["seg"]])
    _wait(lambda: router.discover() > 0)  # StableSeries after StableAge
    router.deliver_due()
    sent = router.list(DeliveryState.sent)
    assert [(d.destination, d.kind) for d in sent] == [("pacs", "seg")]  # "archive" waits for the signed report
    assert pacs_instances(pacs) == 1

    # The PACS goes down; the signed SR and PDF arrive: the deliveries fail and are listed.
    pacs.stop()
    ours.dicomweb().store_instances([instances["sr"], instances["pdf"]])
    _wait(lambda: router.discover() > 0)
    router.discover()
    assert {(d.destination, d.kind) for d in router.list(DeliveryState.queued)} == {
        ("archive", "seg"), ("archive", "sr"), ("archive", "pdf")}
    router.deliver_due()
    failed = router.list(DeliveryState.failed)
    assert len(failed) == 1 and failed[0].last_error and failed[0].attempts == 1
    waiting = router.list(DeliveryState.queued)  # not called once per instance: they wait for the same attempt
    assert len(waiting) == 2 and all(d.attempts == 0 and d.next_attempt_at == failed[0].next_attempt_at for d in waiting)

    # Back: the retries deliver; each SOP Instance UID once, the SEG too (sent to "pacs" already).
    pacs.start()
    _wait(lambda: (router.deliver_due(), len(router.list(DeliveryState.sent)) == 4)[1], timeout=20)
    assert pacs_instances(pacs) == 3  # SEG, SR, PDF: one copy each
    # A resend of a sent delivery is a no-op; a delivery made to fail again and resent adds no copy.
    again = router.resend(sent[0].id)
    assert again.state == DeliveryState.sent
    with session_scope(sessions) as session:
        row = session.get(Delivery, failed[0].id)
        row.state, row.next_attempt_at = DeliveryState.failed, None  # as if the answer had been lost
    assert router.resend(failed[0].id).state == DeliveryState.queued
    router.deliver_due()
    assert router.list(DeliveryState.failed) == [] and pacs_instances(pacs) == 3
    # Found again (a second discovery of the same series) is not a second delivery.
    assert router.queue_series(next(iter(ours.rest()._request("GET", "/series").json()))) == 0


def test_given_up_after_max_attempts(two_orthancs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ours, pacs = two_orthancs
    sessions = _sessions(tmp_path)
    study_uid = generate_uid()
    with session_scope(sessions) as session:
        session.add(Study(study_instance_uid=study_uid, status=StudyStatus.ready))
    pacs.stop()
    destination = Destination(name="pacs", protocol="dimse", aet=PACS_AET, host="127.0.0.1", port=pacs.dicom_port,
                              calling_aet=OUR_AET, what=["seg"], timeout_s=3)
    router = ResultRouter(sessions, ours.rest(), [destination], retry_base_s=0.01, retry_max_s=0.01, max_attempts=2)
    router.discover()
    ours.dicomweb().store_instances([result_instances(study_uid)["seg"]])
    _wait(lambda: router.discover() > 0)
    for _ in range(3):
        router.deliver_due(now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
    [failed] = router.list(DeliveryState.failed)
    assert failed.attempts == 2 and failed.next_attempt_at is None  # given up, listed for an admin
    assert "C-STORE" in (failed.last_error or "")
