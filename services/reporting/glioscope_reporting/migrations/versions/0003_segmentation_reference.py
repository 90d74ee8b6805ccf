"""the DICOM-SEG and source series a report describes

Revision ID: reporting_0003
Revises: reporting_0002
Create Date: 2026-12-04

`reporting_reports.segmentation` (JSON, nullable): the worker's `segmentation` reference (SEG series and
instance, its version, the source series and their instances) that the TID 1500 SR cites as evidence.
Existing reports keep null: their SR references no instance.
"""
from alembic import op
import sqlalchemy as sa

revision = "reporting_0003"
down_revision = "reporting_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN, as in reporting_0002 (no SQLite table copy that would cascade-delete).
    op.add_column("reporting_reports", sa.Column("segmentation", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("reporting_reports", "segmentation")
