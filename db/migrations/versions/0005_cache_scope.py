"""Score cache scoped per tenant, keyed on the weights' content, bounded by age and rows.

The old rows are dropped, not migrated: their identity did not cover the weights (a model directory
replaced in place kept its identity), so none of them can be trusted to belong to the weights a
worker now holds, and they carry no tenant to scope them by. A cache starts empty at no cost but
rescoring.

Revision ID: 0005_cache_scope
Revises: 0004_request_fingerprint
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_cache_scope"
down_revision: str | None = "0004_request_fingerprint"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("score_cache")
    op.create_table(
        "score_cache",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("identity_hash", sa.String(length=64), nullable=False),
        sa.Column("conversation_hash", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("num_tokens", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "identity_hash", "conversation_hash"),
    )
    op.create_index("ix_score_cache_created", "score_cache", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_score_cache_created", table_name="score_cache")
    op.drop_table("score_cache")
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
