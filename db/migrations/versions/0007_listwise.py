"""Listwise (best-of-N) results: every response's score, the best and worst, RewardBench 2's credit,
and the number of responses a job holds.

Revision ID: 0007_listwise
Revises: 0006_chunk_model_ref
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007_listwise"
down_revision: str | None = "0006_chunk_model_ref"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("scores", JSONType, nullable=True))
        batch.add_column(sa.Column("best", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("worst", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("best_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("worst_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("credit", sa.Float(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("responses", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("responses")
    with op.batch_alter_table("results") as batch:
        for name in ("credit", "worst_score", "best_score", "worst", "best", "scores"):
            batch.drop_column(name)
