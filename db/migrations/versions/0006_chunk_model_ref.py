"""The exact model a chunk must be scored with (two model directories can share a basename).

Revision ID: 0006_chunk_model_ref
Revises: 0005_cache_scope
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_chunk_model_ref"
down_revision: str | None = "0005_cache_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("model_ref", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("model_ref")
