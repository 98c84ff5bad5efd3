"""recent case vectors: caseSearch reads the newest cases' subjects and descriptions first

`recent_case_search_vectors` holds the vectors of the newest cases (the search service's
RECENT_CASES, trimmed by the worker's `search_trim`), beside the table of all of them, as 0022 did
for contacts. Two common words typed together intersect the postings of this bounded index, not of
every case ever opened; a rarer search, whose recent matches are few, reads the full index as well.
A trigger on the full table copies its rows here while they are recent.

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# A case is recent when it is no older than the oldest recent one; the trim makes the others old.
MIRROR_RECENT = """
CREATE FUNCTION casegraph_mirror_recent_case_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM recent_case_search_vectors WHERE case_id = OLD.case_id;
    ELSIF NEW.case_id >= coalesce((SELECT min(case_id) FROM recent_case_search_vectors), 0) THEN
        INSERT INTO recent_case_search_vectors (case_id, vector) VALUES (NEW.case_id, NEW.vector)
        ON CONFLICT (case_id) DO UPDATE SET vector = EXCLUDED.vector;
    END IF;
    RETURN NULL;
END $$"""

# The search service's RECENT_CASES when this revision was written.
RECENT_CASES = 50_000


def upgrade() -> None:
    op.create_table(
        "recent_case_search_vectors",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("vector", postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_recent_case_search_vectors_case_id_cases", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("case_id", name="pk_recent_case_search_vectors"),
    )
    op.execute(
        "INSERT INTO recent_case_search_vectors (case_id, vector) "
        f"SELECT case_id, vector FROM case_search_vectors ORDER BY case_id DESC LIMIT {RECENT_CASES}"
    )
    op.create_index(
        "ix_recent_case_search_vectors_vector", "recent_case_search_vectors", ["vector"], postgresql_using="gin"
    )
    op.execute(MIRROR_RECENT)
    op.execute(
        "CREATE TRIGGER case_search_vectors_mirror_recent AFTER INSERT OR UPDATE OR DELETE "
        "ON case_search_vectors FOR EACH ROW EXECUTE FUNCTION casegraph_mirror_recent_case_text()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER case_search_vectors_mirror_recent ON case_search_vectors")
    op.execute("DROP FUNCTION casegraph_mirror_recent_case_text()")
    op.drop_table("recent_case_search_vectors")
