"""queues: pool members, absences, status automation settings, waiting cases

`cases.waiting_since` is kept by a trigger so that every path that assigns, closes, merges,
archives or moves a case keeps the queues right: a live, unfinished case in a pool without an
assignee waits (since it entered that pool), any other case does not.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pools", sa.Column("reply_status", sa.String(16), server_default="pending", nullable=False))
    op.add_column("pools", sa.Column("reopen_within_days", sa.Integer(), server_default=sa.text("14"), nullable=False))
    op.create_check_constraint("reply_status", "pools", "reply_status IN ('pending', 'keep')")
    op.create_check_constraint("reopen_within_days", "pools", "reopen_within_days >= 0")
    op.create_table(
        "pool_members",
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name="fk_pool_members_pool_id_pools", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_pool_members_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pool_id", "user_id", name="pk_pool_members"),
    )
    op.create_index("ix_pool_members_user_id", "pool_members", ["user_id"])
    op.create_table(
        "absences",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("replacement_id", sa.BigInteger(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="ck_absences_period"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_absences_user_id_users", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["replacement_id"], ["users.id"], name="fk_absences_replacement_id_users", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name="fk_absences_created_by_id_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_absences"),
    )
    op.create_index("ix_absences_user_id_ends_at", "absences", ["user_id", "ends_at"])
    op.create_index("ix_absences_replacement_id_ends_at", "absences", ["replacement_id", "ends_at"])
    op.add_column("cases", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    op.execute("""
        CREATE FUNCTION casegraph_case_waiting() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.pool_id IS NULL OR NEW.assignee_id IS NOT NULL OR NEW.status IN ('resolved', 'closed')
               OR NEW.merged_into_id IS NOT NULL OR NEW.archived_at IS NOT NULL THEN
                NEW.waiting_since := NULL;
            ELSIF TG_OP = 'INSERT' THEN
                NEW.waiting_since := coalesce(NEW.waiting_since, now());
            ELSIF OLD.waiting_since IS NULL OR OLD.pool_id IS DISTINCT FROM NEW.pool_id THEN
                NEW.waiting_since := now();
            END IF;
            RETURN NEW;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER cases_waiting BEFORE INSERT OR UPDATE OF pool_id, assignee_id, status, merged_into_id,
        archived_at ON cases FOR EACH ROW EXECUTE FUNCTION casegraph_case_waiting()
    """)
    op.execute("UPDATE cases SET pool_id = pool_id WHERE pool_id IS NOT NULL")
    op.create_index(
        "ix_cases_waiting",
        "cases",
        ["pool_id", "waiting_since", "id"],
        postgresql_where=sa.text("waiting_since IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_waiting", table_name="cases")
    op.execute("DROP TRIGGER cases_waiting ON cases")
    op.execute("DROP FUNCTION casegraph_case_waiting()")
    op.drop_column("cases", "waiting_since")
    op.drop_table("absences")
    op.drop_table("pool_members")
    op.drop_constraint("ck_pools_reopen_within_days", "pools")
    op.drop_constraint("ck_pools_reply_status", "pools")
    op.drop_column("pools", "reopen_within_days")
    op.drop_column("pools", "reply_status")
