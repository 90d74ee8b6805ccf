"""The system-of-record tables that the migrations make are the ones the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import glioscope_common.records.access  # noqa: F401 - their tables are part of the records
import glioscope_common.records.segmentations  # noqa: F401
from glioscope_common.db import make_engine
from glioscope_common.records.migrate import migrate
from glioscope_common.records.models import RecordsBase
from glioscope_common.dev.testing import fresh_postgres_database


def _drift(url: str) -> list:
    migrate(url)
    migrate(url)  # idempotent
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": lambda o, name, type_, r, c: type_ != "table" or name != "alembic_version_records"})
            return compare_metadata(context, RecordsBase.metadata)
    finally:
        engine.dispose()


def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    assert _drift(f"sqlite:///{tmp_path}/records.db") == []


@pytest.mark.services
def test_postgres_schema_matches_the_models() -> None:
    with fresh_postgres_database("glioscope_schema") as url:
        assert _drift(url) == []


def test_a_projects_worklist_page_is_read_in_order_from_its_index(tmp_path: Path) -> None:
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/records.db"
    migrate(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            plan = " ".join(str(row) for row in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT id FROM studies WHERE project = 'a' ORDER BY created_at DESC LIMIT 50")))
    finally:
        engine.dispose()
    assert "ix_studies_project_created_at" in plan and "TEMP B-TREE" not in plan  # no sort of the whole project
