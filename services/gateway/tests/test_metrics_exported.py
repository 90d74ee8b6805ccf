"""What the gateway exports for the alerts (issue 20): the 5xx counter at 0 before the first error, the
jobs gauges from the watcher's leader only (counted once), the oldest queued job's age."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry

from glioscope_common import metrics
from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.records.migrate import migrate
from glioscope_common.records.models import Job, JobState, Study, StudyStatus, utcnow

from .conftest import SERVICE_KEY, gateway_settings


def test_the_5xx_counter_exists_at_zero_before_the_first_error(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    from glioscope_gateway.main import create_app

    with TestClient(create_app(gateway_settings(tmp_path, orthanc)), headers={"x-api-key": SERVICE_KEY}) as client:
        client.get("/healthz")  # the first request (a probe) creates the children
        text = client.get("/metrics").text
    assert 'glioscope_http_errors_total{route="/healthz",service="gateway"} 0.0' in text
    for route in ("/api/studies", "/api/studies/{study_instance_uid}", "/api/jobs/{job_id}", "unmatched"):
        assert REGISTRY.get_sample_value("glioscope_http_errors_total", {"service": "gateway", "route": route}) is not None, route


def test_jobs_gauges_only_from_the_leader_with_the_oldest_queued_age(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    sessions = make_session_factory(make_engine(url))
    with sessions() as session:
        study = Study(study_instance_uid="1.2.3", status=StudyStatus.ready)
        session.add(study)
        session.flush()
        session.add_all([Job(study_id=study.id, state=JobState.queued, created_at=utcnow() - timedelta(seconds=900)),
                         Job(study_id=study.id, state=JobState.queued),
                         Job(study_id=study.id, state=JobState.succeeded, created_at=utcnow() - timedelta(days=3))])
        session.commit()
    leading = [False]
    registry = CollectorRegistry()
    registry.register(metrics.JobsByStateCollector(metrics.jobs_by_state_from_sessions(sessions),
                                                   metrics.oldest_queued_age_from_sessions(sessions), lambda: leading[0]))
    assert registry.get_sample_value("glioscope_jobs_current", {"state": "queued"}) is None  # a follower: nothing
    assert registry.get_sample_value("glioscope_job_oldest_queued_seconds") is None
    leading[0] = True
    assert registry.get_sample_value("glioscope_jobs_current", {"state": "queued"}) == 2
    assert 900 <= registry.get_sample_value("glioscope_job_oldest_queued_seconds") < 960  # type: ignore[operator]
    with sessions() as session:
        for job in session.query(Job).filter(Job.state == JobState.queued):
            job.state = JobState.running
        session.commit()
    assert registry.get_sample_value("glioscope_job_oldest_queued_seconds") == 0


def test_job_outcome_counters_exist_at_zero() -> None:
    metrics.initialise_job_metrics()
    for state in metrics.JOB_OUTCOMES:
        assert REGISTRY.get_sample_value("glioscope_jobs_total", {"state": state}) is not None
