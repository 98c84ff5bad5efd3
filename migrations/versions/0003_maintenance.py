"""maintenance: customer-merge journal, archive rules, trigram name index, tombstone guards

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# A contact or case link written for a merged customer (or a merged case) lands on the record it
# was merged into. A contact written for an erased customer is refused; a case link is not, as
# erasure keeps an erased customer's links for non-personal statistics and a case merge carries
# them to the target. The row lock (KEY SHARE, as a
# foreign key takes) waits for a merge or erasure in progress, so an ingest racing a merge never
# leaves a contact on a tombstone; it also takes the customer before the case, the lock order
# maintenance uses.
GUARD_FUNCTIONS = """
CREATE FUNCTION casegraph_live_customer(customer_id bigint, refuse_erased boolean DEFAULT true)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    current_id bigint := customer_id;
    found_row record;
BEGIN
    IF customer_id IS NULL THEN
        RETURN NULL;
    END IF;
    FOR hop IN 1..16 LOOP
        SELECT status, merged_into_id INTO found_row FROM customers WHERE id = current_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN current_id;
        END IF;
        IF found_row.status = 'erased' THEN
            IF refuse_erased THEN
                RAISE EXCEPTION 'customer % is erased', current_id
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'casegraph_customer_erased';
            END IF;
            RETURN current_id;
        END IF;
        IF found_row.status <> 'merged' OR found_row.merged_into_id IS NULL THEN
            RETURN current_id;
        END IF;
        current_id := found_row.merged_into_id;
    END LOOP;
    RETURN current_id;
END $$;
--
CREATE FUNCTION casegraph_live_case(case_id bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    current_id bigint := case_id;
    target bigint;
BEGIN
    IF case_id IS NULL THEN
        RETURN NULL;
    END IF;
    FOR hop IN 1..16 LOOP
        SELECT merged_into_id INTO target FROM cases WHERE id = current_id FOR KEY SHARE;
        EXIT WHEN target IS NULL;
        current_id := target;
    END LOOP;
    RETURN current_id;
END $$;
--
CREATE FUNCTION casegraph_contacts_follow_tombstones() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.customer_id := casegraph_live_customer(NEW.customer_id);
    NEW.case_id := casegraph_live_case(NEW.case_id);
    RETURN NEW;
END $$;
--
CREATE FUNCTION casegraph_case_links_follow_tombstones() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.customer_id := casegraph_live_customer(NEW.customer_id, false);
    RETURN NEW;
END $$;
--
CREATE TRIGGER contacts_follow_tombstones BEFORE INSERT ON contacts
    FOR EACH ROW EXECUTE FUNCTION casegraph_contacts_follow_tombstones();
--
CREATE TRIGGER case_customers_follow_tombstones BEFORE INSERT ON case_customers
    FOR EACH ROW EXECUTE FUNCTION casegraph_case_links_follow_tombstones();
"""


def upgrade() -> None:
    op.create_table(
        "customer_merges",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("survivor_id", sa.BigInteger(), nullable=False),
        sa.Column("duplicate_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("field_strategy", sa.String(length=16), nullable=False),
        sa.Column("survivor_before", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("survivor_after", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("duplicates_before", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("actor_user_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "field_strategy IN ('survivor_wins', 'fill_empty', 'picks')", name=op.f("ck_customer_merges_field_strategy")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["customers.id"], name=op.f("fk_customer_merges_survivor_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["actor_user_id"], ["users.id"], name=op.f("fk_customer_merges_actor_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_merges")),
    )
    op.create_index("ix_customer_merges_survivor_id", "customer_merges", ["survivor_id", sa.literal_column("id DESC")])
    op.create_table(
        "customer_merge_entries",
        sa.Column("merge_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("from_customer_id", sa.BigInteger(), nullable=False),
        sa.Column("was_primary", sa.Boolean(), nullable=True),
        sa.Column("dropped", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("identifier_kind", sa.String(length=16), nullable=True),
        sa.Column("identifier_value", sa.Text(), nullable=True),
        sa.Column("previous_candidate_ids", postgresql.ARRAY(sa.BigInteger()), nullable=True),
        sa.ForeignKeyConstraint(
            ["merge_id"],
            ["customer_merges.id"],
            name=op.f("fk_customer_merge_entries_merge_id_customer_merges"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "merge_id", "kind", "row_id", "from_customer_id", name=op.f("pk_customer_merge_entries")
        ),
    )
    op.create_table(
        "archive_rules",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("inactivity_days", sa.Integer(), nullable=False),
        sa.Column("exempt_when", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("expiry_action", sa.String(length=16), server_default="anonymise", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("entity IN ('customer', 'case')", name=op.f("ck_archive_rules_entity")),
        sa.CheckConstraint("expiry_action IN ('delete', 'anonymise')", name=op.f("ck_archive_rules_expiry_action")),
        sa.CheckConstraint("inactivity_days >= 0", name=op.f("ck_archive_rules_inactivity_days")),
        sa.CheckConstraint(
            "retention_days IS NULL OR retention_days >= 0", name=op.f("ck_archive_rules_retention_days")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_archive_rules_name")),
    )
    # customerDuplicates: similar names by trigram similarity.
    op.execute("CREATE INDEX ix_customers_name_trgm ON customers USING gin (name gin_trgm_ops)")
    # Re-pointing older tombstones at a new survivor touches only those rows.
    op.execute(
        "CREATE INDEX ix_customers_merged_into_id ON customers (merged_into_id) WHERE merged_into_id IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_cases_merged_into_id ON cases (merged_into_id) WHERE merged_into_id IS NOT NULL")
    # The archive sweep reads only the inactive (then only the expired) rows, not the table.
    op.execute(
        "CREATE INDEX ix_customers_inactive ON customers ((coalesce(last_activity_at, created_at)), id) "
        "WHERE status = 'active'"
    )
    op.execute("CREATE INDEX ix_customers_archived_at ON customers (archived_at, id) WHERE status = 'archived'")
    op.execute(
        "CREATE INDEX ix_cases_inactive ON cases (updated_at, id) "
        "WHERE archived_at IS NULL AND merged_into_id IS NULL AND status IN ('resolved', 'closed')"
    )
    # Expiry anonymises a case once: anonymised cases leave the index the expiry sweep reads.
    op.add_column("cases", sa.Column("anonymised_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "CREATE INDEX ix_cases_archived_at ON cases (archived_at, id) WHERE archived_at IS NOT NULL AND anonymised_at IS NULL"
    )
    # A merge or erasure rewrites the candidate lists naming a customer without reading every contact.
    op.execute(
        "CREATE INDEX ix_contacts_candidate_customer_ids ON contacts USING gin (candidate_customer_ids) "
        "WHERE candidate_customer_ids <> '{}'"
    )
    for statement in GUARD_FUNCTIONS.split("\n--\n"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER case_customers_follow_tombstones ON case_customers")
    op.execute("DROP TRIGGER contacts_follow_tombstones ON contacts")
    op.execute("DROP FUNCTION casegraph_case_links_follow_tombstones()")
    op.execute("DROP FUNCTION casegraph_contacts_follow_tombstones()")
    op.execute("DROP FUNCTION casegraph_live_case(bigint)")
    op.execute("DROP FUNCTION casegraph_live_customer(bigint, boolean)")
    for name in (
        "ix_contacts_candidate_customer_ids",
        "ix_cases_archived_at",
        "ix_cases_inactive",
        "ix_customers_archived_at",
        "ix_customers_inactive",
        "ix_cases_merged_into_id",
        "ix_customers_merged_into_id",
        "ix_customers_name_trgm",
    ):
        op.execute(f"DROP INDEX {name}")
    op.drop_column("cases", "anonymised_at")
    op.drop_table("archive_rules")
    op.drop_table("customer_merge_entries")
    op.drop_index("ix_customer_merges_survivor_id", table_name="customer_merges")
    op.drop_table("customer_merges")
