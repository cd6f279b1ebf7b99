"""suggestions: one index on (model_version, image_id)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 18:45:00

Reading a version's suggestions of a set of images (`model_version = ? AND image_id IN (...)`) used
the index on model_version alone and scanned every suggestion of the version per chunk: at 100,000
images (2 million rows per version) calibration and evaluation after a quick round took 30 s. The
composite index serves both that and `model_version = ?` alone, so it replaces the old one.
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('suggestions') as batch_op:
        batch_op.create_index('ix_suggestions_version_image', ['model_version', 'image_id'],
                              unique=False)
        batch_op.drop_index('ix_suggestions_version')


def downgrade() -> None:
    with op.batch_alter_table('suggestions') as batch_op:
        batch_op.create_index('ix_suggestions_version', ['model_version'], unique=False)
        batch_op.drop_index('ix_suggestions_version_image')
