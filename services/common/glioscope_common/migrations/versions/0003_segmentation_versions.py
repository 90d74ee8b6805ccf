"""job kinds; segmentation versions (edited masks saved as new DICOM-SEG series)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

from glioscope_common.db import UTCDateTime


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.Enum('segmentation', 'edit', name='jobkind', native_enum=False, length=16),
                                      server_default='segmentation', nullable=False))

    op.create_table('segmentation_versions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('study_id', sa.String(length=32), nullable=False),
    sa.Column('model_job_id', sa.String(length=32), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('base_version', sa.Integer(), nullable=False),
    sa.Column('source_series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('dimensions', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('labels_gz', sa.LargeBinary(), nullable=True),
    sa.Column('seg_series_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('seg_sop_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('seg_series_number', sa.Integer(), nullable=True),
    sa.Column('nifti_path', sa.String(length=512), nullable=True),
    sa.Column('voxel_counts', sa.JSON(), nullable=True),
    sa.Column('measurements', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_segmentation_versions_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_job_id'], ['jobs.id'], name=op.f('fk_segmentation_versions_model_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_segmentation_versions_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segmentation_versions')),
    sa.UniqueConstraint('job_id', name=op.f('uq_segmentation_versions_job_id')),
    sa.UniqueConstraint('model_job_id', 'version', name='uq_segmentation_versions_chain')
    )
    with op.batch_alter_table('segmentation_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_segmentation_versions_study_id'), ['study_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_segmentation_versions_model_job_id'), ['model_job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('segmentation_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_segmentation_versions_model_job_id'))
        batch_op.drop_index(batch_op.f('ix_segmentation_versions_study_id'))
    op.drop_table('segmentation_versions')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('kind')
