"""result routing and processing rules: deliveries to destinations; a study's processing note

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

from glioscope_common.db import UTCDateTime


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # studies.status is a VARCHAR(16) without a CHECK constraint (native_enum=False): 'not_processed' needs no change.
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('processing_note', sa.String(length=512), nullable=True))

    op.create_table('deliveries',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('orthanc_instance_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum('queued', 'sent', 'failed', name='deliverystate', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=True),
    sa.Column('sent_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('destination', 'sop_instance_uid', name='uq_deliveries_destination_sop'),
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_study_instance_uid'), ['study_instance_uid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_study_instance_uid'))
        batch_op.drop_index('ix_deliveries_state_next_attempt_at')
    op.drop_table('deliveries')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('processing_note')
