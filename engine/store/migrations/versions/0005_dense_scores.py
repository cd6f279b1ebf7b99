"""score_blocks and score_columns: every score of a version densely, suggestions only above a floor

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03 06:10:00

One suggestion row per (image, class, version) is 80 million rows for a 1M-image, 80-class
project. Each version's scores now live in one float32 block per image (`score_blocks`, columns
in `score_columns` order); `suggestions` keeps the rows at or above the floor (0.02), which is all
the gallery filters and sorts on. Existing suggestions become blocks, then the rows below the
floor go. An index on (model_version, class_id, confidence) serves the gallery's per-class
confidence filters. Downgrade writes the rows back from the blocks.
"""
import json

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0003'
branch_labels = None
depends_on = None

FLOOR = 0.02  # engine.store.scores.SUGGESTION_FLOOR when this migration was written


def upgrade() -> None:
    op.create_table(
        'score_blocks',
        sa.Column('model_version', sa.String(), primary_key=True),
        sa.Column('image_id', sa.Integer(), sa.ForeignKey('images.id', ondelete='CASCADE'),
                  primary_key=True),
        sa.Column('scores', sa.LargeBinary(), nullable=False))
    op.create_table(
        'score_columns',
        sa.Column('model_version', sa.String(), primary_key=True),
        sa.Column('class_ids', sa.JSON(), nullable=False))
    connection = op.get_bind()
    versions = [row[0] for row in connection.execute(sa.text(
        "SELECT DISTINCT model_version FROM suggestions"))]
    for version in versions:
        _blocks_from_rows(connection, version)
    op.execute(sa.text("DELETE FROM suggestions WHERE confidence < :floor").bindparams(floor=FLOOR))
    op.create_index('ix_suggestions_version_class', 'suggestions',
                    ['model_version', 'class_id', 'confidence'])


def _blocks_from_rows(connection, version: str) -> None:  # noqa: ANN001
    rows = connection.execute(sa.text(
        "SELECT image_id, class_id, confidence FROM suggestions WHERE model_version = :v "
        "ORDER BY image_id"), {"v": version}).all()
    class_ids = sorted({class_id for _, class_id, _ in rows})
    column = {class_id: k for k, class_id in enumerate(class_ids)}
    blocks: dict[int, np.ndarray] = {}
    for image_id, class_id, confidence in rows:
        block = blocks.setdefault(image_id, np.full(len(class_ids), np.nan, dtype='<f4'))
        block[column[class_id]] = confidence
    columns = sa.table('score_columns', sa.column('model_version', sa.String),
                       sa.column('class_ids', sa.JSON))
    connection.execute(columns.insert(), {"model_version": version, "class_ids": class_ids})
    if blocks:
        connection.execute(
            sa.text("INSERT INTO score_blocks (model_version, image_id, scores) "
                    "VALUES (:v, :i, :s)").bindparams(sa.bindparam("s", type_=sa.LargeBinary)),
            [{"v": version, "i": image_id, "s": block.tobytes()}
             for image_id, block in blocks.items()])


def downgrade() -> None:
    connection = op.get_bind()
    op.execute(sa.text("DELETE FROM suggestions"))
    columns = {version: json.loads(ids) if isinstance(ids, str) else ids
               for version, ids in connection.execute(sa.text(
                   "SELECT model_version, class_ids FROM score_columns"))}
    for version, image_id, blob in connection.execute(sa.text(
            "SELECT model_version, image_id, scores FROM score_blocks")).all():
        values = np.frombuffer(bytes(blob), dtype='<f4')
        rows = [{"i": image_id, "c": class_id, "p": float(p), "v": version}
                for class_id, p in zip(columns[version], values) if not np.isnan(p)]
        if rows:
            connection.execute(sa.text(
                "INSERT INTO suggestions (image_id, class_id, confidence, model_version, "
                "created_at) VALUES (:i, :c, :p, :v, CURRENT_TIMESTAMP)"), rows)
    op.drop_index('ix_suggestions_version_class', table_name='suggestions')
    op.drop_table('score_columns')
    op.drop_table('score_blocks')
