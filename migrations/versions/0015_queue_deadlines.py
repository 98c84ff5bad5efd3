"""queue deadlines: caseNext serves the case whose deadline comes first

`cases.due_at` is the case's next SLA deadline (the first-response deadline until the first
response, then the resolution deadline; none while its clock is paused or stopped). A trigger on
`case_slas` keeps it, so each waiting case's place in its pool is read from one index.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("""
        CREATE FUNCTION casegraph_case_due() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            target bigint;
            due timestamptz;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                target := OLD.case_id;
            ELSE
                target := NEW.case_id;
                IF NEW.paused_at IS NULL AND NEW.resolved_at IS NULL THEN
                    due := CASE WHEN NEW.first_responded_at IS NULL
                                THEN least(NEW.response_due_at, NEW.resolution_due_at)
                                ELSE NEW.resolution_due_at END;
                END IF;
            END IF;
            UPDATE cases SET due_at = due WHERE id = target AND due_at IS DISTINCT FROM due;
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER case_slas_due AFTER INSERT OR DELETE OR UPDATE OF paused_at, resolved_at, first_responded_at,
        response_due_at, resolution_due_at ON case_slas FOR EACH ROW EXECUTE FUNCTION casegraph_case_due()
    """)
    op.execute("UPDATE case_slas SET resolution_due_at = resolution_due_at")
    op.drop_index("ix_cases_waiting", table_name="cases")
    op.create_index(
        "ix_cases_waiting",
        "cases",
        ["pool_id", "due_at", "waiting_since", "id"],
        postgresql_where=sa.text("waiting_since IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_cases_waiting", table_name="cases")
    op.create_index(
        "ix_cases_waiting",
        "cases",
        ["pool_id", "waiting_since", "id"],
        postgresql_where=sa.text("waiting_since IS NOT NULL"),
    )
    op.execute("DROP TRIGGER case_slas_due ON case_slas")
    op.execute("DROP FUNCTION casegraph_case_due()")
    op.drop_column("cases", "due_at")
