"""sections to review after the segmentation changed

Revision ID: reporting_0004
Revises: reporting_0003
Create Date: 2026-12-03

`reporting_reports.review_sections` (JSON list, default []): sections a clinician wrote whose numbers
changed with a newer segmentation version (glioscope_reporting.reports.refresh); sign-off is refused
while it is not empty.
"""
from alembic import op
import sqlalchemy as sa

revision = "reporting_0004"
down_revision = "reporting_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reporting_reports",
                  sa.Column("review_sections", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    op.drop_column("reporting_reports", "review_sections")
