"""worklist index: studies by project, newest first

Revision ID: 0004
Revises: 0003
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_studies_project_created_at', 'studies', ['project', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_studies_project_created_at', table_name='studies')
