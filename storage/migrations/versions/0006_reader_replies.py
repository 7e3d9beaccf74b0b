"""reader replies: reader_message and reader_message_notice

Issue 5 item 6: a reader's message to the author (and the author's answer) is a ``reader_message`` row; each copy
forwarded to an admin's chat is a ``reader_message_notice`` row (the platform's message id there), so that the
admin's reply to it finds the reader.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 12:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import storage.types


revision: str = '0006'
# After the media migration written at the same time (0005m, issue images), so the history stays one line.
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('reader_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('platform_message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('quote_token', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('in_reply_to', sa.Integer(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['endpoint.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reader_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reader_message_endpoint_id'), ['endpoint_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reader_message_in_reply_to'), ['in_reply_to'], unique=False)

    op.create_table('reader_message_notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('chat', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('platform_message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['reader_message.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'chat', 'platform_message_id', name='uq_reader_notice_platform_message')
    )
    with op.batch_alter_table('reader_message_notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reader_message_notice_message_id'), ['message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('reader_message_notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reader_message_notice_message_id'))
    op.drop_table('reader_message_notice')
    with op.batch_alter_table('reader_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reader_message_in_reply_to'))
        batch_op.drop_index(batch_op.f('ix_reader_message_endpoint_id'))
    op.drop_table('reader_message')
