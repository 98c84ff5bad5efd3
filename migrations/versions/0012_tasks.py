"""tasks: follow-ups on customers and cases with a due time and a reminder; reminder mails in the outbox

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _one_of(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), server_default="open", nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("assignee_id", sa.BigInteger(), nullable=False),
        sa.Column("created_by_id", sa.BigInteger(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by_id", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(_one_of("kind", ("call", "email", "meeting", "chat", "other")), name=op.f("ck_tasks_kind")),
        sa.CheckConstraint(_one_of("status", ("open", "completed", "cancelled")), name=op.f("ck_tasks_status")),
        sa.CheckConstraint("customer_id IS NOT NULL OR case_id IS NOT NULL", name=op.f("ck_tasks_on_customer_or_case")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_tasks_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_tasks_case_id_cases"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["assignee_id"], ["users.id"], name=op.f("fk_tasks_assignee_id_users")),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name=op.f("fk_tasks_created_by_id_users")),
        sa.ForeignKeyConstraint(["completed_by_id"], ["users.id"], name=op.f("fk_tasks_completed_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_assignee_due", "tasks", ["assignee_id", "due_at", "id"])
    op.create_index("ix_tasks_open_due", "tasks", ["due_at", "id"], postgresql_where=sa.text("status = 'open'"))
    op.create_index(
        "ix_tasks_customer_due",
        "tasks",
        ["customer_id", "due_at", "id"],
        postgresql_where=sa.text("customer_id IS NOT NULL"),
    )
    op.create_index(
        "ix_tasks_case_due", "tasks", ["case_id", "due_at", "id"], postgresql_where=sa.text("case_id IS NOT NULL")
    )
    op.create_index(
        "ix_tasks_reminders_due",
        "tasks",
        ["remind_at"],
        postgresql_where=sa.text("remind_at IS NOT NULL AND reminded_at IS NULL AND status = 'open'"),
    )
    # A reminder mail to a user is in the outbox without being a contact on a case.
    op.alter_column("outbound_messages", "contact_id", existing_type=sa.BigInteger(), nullable=True)
    op.drop_constraint(op.f("ck_outbound_messages_kind"), "outbound_messages", type_="check")
    op.create_check_constraint(
        op.f("ck_outbound_messages_kind"),
        "outbound_messages",
        _one_of("kind", ("reply", "auto_response", "task_reminder")),
    )


def downgrade() -> None:
    op.execute("DELETE FROM outbound_messages WHERE kind = 'task_reminder'")
    op.drop_constraint(op.f("ck_outbound_messages_kind"), "outbound_messages", type_="check")
    op.create_check_constraint(
        op.f("ck_outbound_messages_kind"), "outbound_messages", _one_of("kind", ("reply", "auto_response"))
    )
    op.alter_column("outbound_messages", "contact_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_table("tasks")
