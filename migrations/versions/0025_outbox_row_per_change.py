"""outbox row per change: the events of one transaction are kept in one outbox row

A batch of ingests emits thousands of events; one row each cost an insert, an index entry, a
delete and their WAL apiece. A row now holds the array of a transaction's event bodies; each body
names its topic and key, from which its channel follows.

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_outbox", sa.Column("events", postgresql.JSONB()))
    op.execute("UPDATE event_outbox SET events = jsonb_build_array(body)")
    op.alter_column("event_outbox", "events", nullable=False)
    op.drop_column("event_outbox", "channel")
    op.drop_column("event_outbox", "body")


def downgrade() -> None:
    op.add_column("event_outbox", sa.Column("channel", sa.Text()))
    op.add_column("event_outbox", sa.Column("body", postgresql.JSONB()))
    op.execute(
        "INSERT INTO event_outbox (channel, body, events, created_at) "
        "SELECT 'casegraph:events:' || (e->>'topic') || ':' || (e->>'key'), e, '[]', o.created_at "
        "FROM event_outbox o, jsonb_array_elements(o.events) AS e WHERE o.channel IS NULL"
    )
    op.execute("DELETE FROM event_outbox WHERE channel IS NULL")
    op.alter_column("event_outbox", "channel", nullable=False)
    op.alter_column("event_outbox", "body", nullable=False)
    op.drop_column("event_outbox", "events")
