"""recent contact vectors: caseSearch reads the newest contacts' words first

`recent_contact_search_vectors` holds the vectors of the newest contacts on a case (the
search service's RECENT_CONTACTS, trimmed by the worker's `search_trim`), beside the table of all of
them. Two common words typed together intersect the postings of this bounded index, not of every
contact ever kept; a rarer search, whose recent matches are few, reads the full index as well.
The contact trigger now keeps both: a new contact enters both, a change reaches the recent copy
while the contact is still among the recent ones.

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

# The 0010 trigger function, restored by the downgrade.
CONTACT_TRIGGER_0010 = """
CREATE OR REPLACE FUNCTION casegraph_index_contact_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.case_id IS NULL THEN
        DELETE FROM contact_search_vectors WHERE contact_id = NEW.id;
    ELSE
        INSERT INTO contact_search_vectors (contact_id, case_id, vector)
        VALUES (NEW.id, NEW.case_id,
                setweight(to_tsvector(casegraph_text_search_config(), coalesce(NEW.subject, '')), 'B')
                || setweight(to_tsvector(casegraph_text_search_config(),
                                         left(coalesce(NEW.text, ''), 100000)), 'C'))
        ON CONFLICT (contact_id) DO UPDATE SET case_id = EXCLUDED.case_id, vector = EXCLUDED.vector;
    END IF;
    RETURN NULL;
END $$"""

# A contact is recent when it is new or no older than the oldest recent one (a contact created
# without a case and associated a minute later is recent too); the trim makes the others old.
CONTACT_TRIGGER = """
CREATE OR REPLACE FUNCTION casegraph_index_contact_text() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    indexed tsvector;
BEGIN
    IF NEW.case_id IS NULL THEN
        DELETE FROM contact_search_vectors WHERE contact_id = NEW.id;
        DELETE FROM recent_contact_search_vectors WHERE contact_id = NEW.id;
        RETURN NULL;
    END IF;
    indexed := setweight(to_tsvector(casegraph_text_search_config(), coalesce(NEW.subject, '')), 'B')
               || setweight(to_tsvector(casegraph_text_search_config(), left(coalesce(NEW.text, ''), 100000)), 'C');
    INSERT INTO contact_search_vectors (contact_id, case_id, vector) VALUES (NEW.id, NEW.case_id, indexed)
    ON CONFLICT (contact_id) DO UPDATE SET case_id = EXCLUDED.case_id, vector = EXCLUDED.vector;
    IF TG_OP = 'INSERT'
       OR NEW.id >= coalesce((SELECT min(contact_id) FROM recent_contact_search_vectors), 0) THEN
        INSERT INTO recent_contact_search_vectors (contact_id, case_id, vector) VALUES (NEW.id, NEW.case_id, indexed)
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
    op.execute(CONTACT_TRIGGER)


def downgrade() -> None:
    op.execute(CONTACT_TRIGGER_0010)
    op.drop_table("recent_contact_search_vectors")
