"""Score cache across jobs, and which results came from it.

Revision ID: 0003_score_cache
Revises: 0002_api_keys
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_score_cache"
down_revision: str | None = "0002_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "score_cache",
        sa.Column("identity_hash", sa.String(length=64), nullable=False),
        sa.Column("conversation_hash", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("num_tokens", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("identity_hash", "conversation_hash"),
    )
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("cached")
    op.drop_table("score_cache")
