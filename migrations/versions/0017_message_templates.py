"""message templates: the system's own mails (SLA notices, task reminders) as edited

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_templates",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("kind IN ('sla_warning', 'sla_breach', 'task_reminder')", name="ck_message_templates_kind"),
        sa.PrimaryKeyConstraint("kind", name="pk_message_templates"),
    )


def downgrade() -> None:
    op.drop_table("message_templates")
