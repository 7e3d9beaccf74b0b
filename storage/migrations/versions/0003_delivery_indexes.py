"""delivery indexes for the claim and for progress counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 19:00:00
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_index('ix_delivery_claim', table_name='delivery')
    op.create_index('ix_delivery_pending', 'delivery', ['channel', 'status', 'issue_id', 'id'], unique=False)
    op.create_index('ix_delivery_progress', 'delivery', ['issue_id', 'channel', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_delivery_progress', table_name='delivery')
    op.drop_index('ix_delivery_pending', table_name='delivery')
    op.create_index('ix_delivery_claim', 'delivery', ['channel', 'status', 'next_attempt_at'], unique=False)
