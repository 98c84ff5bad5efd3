"""recent contact vectors: caseSearch reads the newest contacts' words first

`recent_contact_search_vectors` holds the vectors of the newest contacts on a case (the
search service's RECENT_CONTACTS, trimmed by the worker's `search_trim`), beside the table of all of
them. Two common words typed together intersect the postings of this bounded index, not of every
contact ever kept; a rarer search, whose recent matches are few, reads the full index as well.
A trigger on the full table copies its rows here while they are recent.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# A row is recent when its contact is no older than the oldest recent one: a new contact, or one
# filed on a case a minute after it came in; the trim makes the others old.
MIRROR_RECENT = """
CREATE FUNCTION casegraph_mirror_recent_contact_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM recent_contact_search_vectors WHERE contact_id = OLD.contact_id;
    ELSIF NEW.contact_id >= coalesce((SELECT min(contact_id) FROM recent_contact_search_vectors), 0) THEN
        INSERT INTO recent_contact_search_vectors (contact_id, case_id, vector)
        VALUES (NEW.contact_id, NEW.case_id, NEW.vector)
        ON CONFLICT (contact_id) DO UPDATE SET case_id = EXCLUDED.case_id, vector = EXCLUDED.vector;
    END IF;
    RETURN NULL;
END $$"""

# The search service's RECENT_CONTACTS when this revision was written.
RECENT_CONTACTS = 250_000


def upgrade() -> None:
    op.create_table(
        "recent_contact_search_vectors",
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("vector", postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_recent_contact_search_vectors_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", name="pk_recent_contact_search_vectors"),
    )
    op.execute(
        "INSERT INTO recent_contact_search_vectors (contact_id, case_id, vector) "
        f"SELECT contact_id, case_id, vector FROM contact_search_vectors ORDER BY contact_id DESC LIMIT {RECENT_CONTACTS}"
    )
    op.create_index(
        "ix_recent_contact_search_vectors_vector", "recent_contact_search_vectors", ["vector"], postgresql_using="gin"
    )
    op.execute(MIRROR_RECENT)
    op.execute(
        "CREATE TRIGGER contact_search_vectors_mirror_recent AFTER INSERT OR UPDATE OR DELETE "
        "ON contact_search_vectors FOR EACH ROW EXECUTE FUNCTION casegraph_mirror_recent_contact_text()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER contact_search_vectors_mirror_recent ON contact_search_vectors")
    op.execute("DROP FUNCTION casegraph_mirror_recent_contact_text()")
    op.drop_table("recent_contact_search_vectors")
