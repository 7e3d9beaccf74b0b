"""LINE friendship per user: line_friend

Issue 6 item 5 (LINE first contact): LINE delivers only to friends, and only ``follow``/``unfollow`` webhooks say who
is one. ``line_friend`` keeps the latest answer per LINE user, whether or not they have an endpoint yet (the follow
comes before the consent). What the old ``endpoint.friend`` column knew is copied over; the column stays (unused)
so that older code and data keep working.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 20:20:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import storage.types


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('line_friend',
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('friend', sa.Boolean(), nullable=False),
    sa.Column('changed_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('webhook_event_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('updated_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    # Keep what endpoint.friend knew (set by follow/unfollow since 0001); its updated_at is the best time we have.
    op.execute(
        "INSERT INTO line_friend (user_id, friend, changed_at, webhook_event_id, updated_at) "
        "SELECT address, friend, updated_at, NULL, updated_at FROM endpoint "
        "WHERE channel = 'line' AND address IS NOT NULL AND friend IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table('line_friend')
