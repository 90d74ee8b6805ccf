"""reporting_reports and reporting_key_images

Revision ID: reporting_0001
Revises:
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

from glioscope_common.db import UTCDateTime

revision = "reporting_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reporting_reports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=True),
        sa.Column("ai_drafted", sa.Boolean(), nullable=False),
        sa.Column("patient", sa.JSON(), nullable=False),
        sa.Column("study", sa.JSON(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.Column("measurements", sa.JSON(), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_reports")),
        sa.UniqueConstraint("study_instance_uid", "job_id", name="uq_reporting_reports_study_job"),
    )
    op.create_index(
        op.f("ix_reporting_reports_study_instance_uid"), "reporting_reports", ["study_instance_uid"], unique=False
    )
    op.create_table(
        "reporting_key_images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reporting_reports.id"],
            name=op.f("fk_reporting_key_images_report_id_reporting_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_key_images")),
        sa.UniqueConstraint("report_id", "name", name="uq_reporting_key_images_report_name"),
    )
    op.create_index(op.f("ix_reporting_key_images_report_id"), "reporting_key_images", ["report_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reporting_key_images_report_id"), table_name="reporting_key_images")
    op.drop_table("reporting_key_images")
    op.drop_index(op.f("ix_reporting_reports_study_instance_uid"), table_name="reporting_reports")
    op.drop_table("reporting_reports")
