"""runs.owner: the process that runs a training run

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:05:00

A run records '<host>:<pid>:<process start>' of the process running it, so a later open of the
project can tell a run whose process was killed (still 'running') from one still going (issue 15).
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('owner', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('owner')
