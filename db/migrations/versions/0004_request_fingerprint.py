"""A job remembers the fingerprint of the request that created it, so an Idempotency-Key reused
with a different request is refused instead of silently answering with the first job.

Revision ID: 0004_request_fingerprint
Revises: 0003_score_cache
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_request_fingerprint"
down_revision: str | None = "0003_score_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: jobs stored before this revision (or without a key) have none, and match any retry.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_fingerprint")
