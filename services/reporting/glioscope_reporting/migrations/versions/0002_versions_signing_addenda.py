"""versions, sign-off, addenda, screenshots, structured fields

Revision ID: reporting_0002
Revises: reporting_0001
Create Date: 2026-11-25

Existing reports get version rows for their current version (action "created"), their patient_id and
study_date copied out of the patient/study JSON, and ai_sections all false (the drafts before this
revision were deterministic).
"""
from alembic import op
import sqlalchemy as sa

from glioscope_common.db import UTCDateTime, utcnow

revision = "reporting_0002"
down_revision = "reporting_0001"
branch_labels = None
depends_on = None

SECTIONS = ("findings", "impression", "diagnosis", "recommendations")


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (no batch "move and copy" on SQLite: recreating reporting_reports with
    # foreign keys on would cascade-delete the key images). NOT NULL columns come with a server default.
    op.add_column("reporting_reports", sa.Column("patient_id", sa.String(length=64), nullable=False, server_default=""))
    op.add_column("reporting_reports", sa.Column("study_date", sa.String(length=16), nullable=False, server_default=""))
    op.add_column("reporting_reports", sa.Column("ai_sections", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.add_column("reporting_reports", sa.Column("structured", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.add_column("reporting_reports", sa.Column("signed_by", sa.String(length=128), nullable=True))
    op.add_column("reporting_reports", sa.Column("signed_role", sa.String(length=32), nullable=True))
    op.add_column("reporting_reports", sa.Column("signed_at", UTCDateTime(), nullable=True))
    op.add_column("reporting_reports", sa.Column("export", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_reporting_reports_patient_id"), "reporting_reports", ["patient_id"], unique=False)

    op.create_table(
        "reporting_report_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("ai_sections", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reporting_reports.id"],
            name=op.f("fk_reporting_report_versions_report_id_reporting_reports"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_report_versions")),
        sa.UniqueConstraint("report_id", "version", name="uq_reporting_report_versions_report_version"),
    )
    op.create_index(op.f("ix_reporting_report_versions_report_id"), "reporting_report_versions", ["report_id"], unique=False)
    op.create_table(
        "reporting_addenda",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reporting_reports.id"],
            name=op.f("fk_reporting_addenda_report_id_reporting_reports"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_addenda")),
    )
    op.create_index(op.f("ix_reporting_addenda_report_id"), "reporting_addenda", ["report_id"], unique=False)
    op.create_table(
        "reporting_screenshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("caption", sa.String(length=256), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reporting_reports.id"],
            name=op.f("fk_reporting_screenshots_report_id_reporting_reports"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_screenshots")),
    )
    op.create_index(op.f("ix_reporting_screenshots_report_id"), "reporting_screenshots", ["report_id"], unique=False)

    # Backfill the existing reports.
    bind = op.get_bind()
    reports = sa.table(
        "reporting_reports",
        sa.column("id", sa.String), sa.column("version", sa.Integer), sa.column("created_at", UTCDateTime()),
        sa.column("author", sa.String), sa.column("patient", sa.JSON), sa.column("study", sa.JSON),
        sa.column("sections", sa.JSON), sa.column("patient_id", sa.String), sa.column("study_date", sa.String),
        sa.column("ai_sections", sa.JSON), sa.column("structured", sa.JSON), sa.column("ai_drafted", sa.Boolean),
    )
    versions = sa.table(
        "reporting_report_versions",
        sa.column("report_id", sa.String), sa.column("version", sa.Integer), sa.column("created_at", UTCDateTime()),
        sa.column("author", sa.String), sa.column("role", sa.String), sa.column("action", sa.String),
        sa.column("sections", sa.JSON), sa.column("ai_sections", sa.JSON),
    )
    none_ai = {s: False for s in SECTIONS}
    rows = bind.execute(
        sa.select(reports.c.id, reports.c.version, reports.c.created_at, reports.c.author, reports.c.patient,
                  reports.c.study, reports.c.sections)
    ).all()
    for row in rows:
        bind.execute(
            reports.update().where(reports.c.id == row.id).values(
                patient_id=str((row.patient or {}).get("patient_id", ""))[:64],
                study_date=str((row.study or {}).get("study_date", ""))[:16],
                ai_sections=none_ai, structured={}, ai_drafted=False,
            )
        )
        bind.execute(
            versions.insert().values(
                report_id=row.id, version=row.version, created_at=row.created_at or utcnow(), author=row.author,
                role=None, action="created", sections=row.sections, ai_sections=none_ai,
            )
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_reporting_screenshots_report_id"), table_name="reporting_screenshots")
    op.drop_table("reporting_screenshots")
    op.drop_index(op.f("ix_reporting_addenda_report_id"), table_name="reporting_addenda")
    op.drop_table("reporting_addenda")
    op.drop_index(op.f("ix_reporting_report_versions_report_id"), table_name="reporting_report_versions")
    op.drop_table("reporting_report_versions")
    # ALTER TABLE DROP COLUMN (SQLite >= 3.35, Postgres): no table copy, the key images stay.
    op.drop_index(op.f("ix_reporting_reports_patient_id"), table_name="reporting_reports")
    for column in ("export", "signed_at", "signed_role", "signed_by", "structured", "ai_sections", "study_date", "patient_id"):
        op.drop_column("reporting_reports", column)
