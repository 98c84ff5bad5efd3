"""search: accent-folded name trigrams, phone suffixes, full-text vectors of cases and contacts

`casegraph_fold` is the immutable accent- and case-folding that the name index and the queries
share (unaccent itself is only stable). The text of cases and of their contacts is indexed as
tsvectors in tables of their own, kept by triggers, in the deployment's text-search
configuration: `ALTER DATABASE … SET casegraph.text_search_config = 'french'` (default english).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    op.execute(
        "CREATE FUNCTION casegraph_fold(value text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS "
        "$$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$"
    )
    op.execute(
        "CREATE FUNCTION casegraph_text_search_config() RETURNS regconfig LANGUAGE sql STABLE AS "
        "$$ SELECT coalesce(nullif(current_setting('casegraph.text_search_config', true), ''), 'english')::regconfig $$"
    )
    op.create_table(
        "case_search_vectors",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("vector", postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_case_search_vectors_case_id_cases", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("case_id", name="pk_case_search_vectors"),
    )
    op.create_index("ix_case_search_vectors_vector", "case_search_vectors", ["vector"], postgresql_using="gin")
    op.create_table(
        "contact_search_vectors",
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("vector", postgresql.TSVECTOR(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name="fk_contact_search_vectors_contact_id_contacts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("contact_id", name="pk_contact_search_vectors"),
    )
    op.create_index("ix_contact_search_vectors_vector", "contact_search_vectors", ["vector"], postgresql_using="gin")
    op.create_index("ix_contact_search_vectors_case_id", "contact_search_vectors", ["case_id"])
    op.execute("""
        CREATE FUNCTION casegraph_index_case_text() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO case_search_vectors (case_id, vector)
            VALUES (NEW.id,
                    setweight(to_tsvector(casegraph_text_search_config(), coalesce(NEW.subject, '')), 'A')
                    || setweight(to_tsvector(casegraph_text_search_config(), coalesce(NEW.description, '')), 'B'))
            ON CONFLICT (case_id) DO UPDATE SET vector = EXCLUDED.vector;
            RETURN NULL;
        END $$""")
    # Only contacts on a case are searched (caseSearch); a contact leaving its case leaves the index.
    op.execute("""
        CREATE FUNCTION casegraph_index_contact_text() RETURNS trigger LANGUAGE plpgsql AS $$
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
        END $$""")
    op.execute(
        "CREATE TRIGGER cases_index_text AFTER INSERT OR UPDATE OF subject, description ON cases "
        "FOR EACH ROW EXECUTE FUNCTION casegraph_index_case_text()"
    )
    op.execute(
        "CREATE TRIGGER contacts_index_text AFTER INSERT OR UPDATE OF subject, text, case_id ON contacts "
        "FOR EACH ROW EXECUTE FUNCTION casegraph_index_contact_text()"
    )
    op.execute("UPDATE cases SET subject = subject")
    op.execute("UPDATE contacts SET case_id = case_id WHERE case_id IS NOT NULL")
    op.execute("CREATE INDEX ix_customers_name_folded ON customers USING gin (casegraph_fold(name) gin_trgm_ops)")
    # A phone typed without its country code matches the end of the stored E.164 number.
    op.execute(
        "CREATE INDEX ix_customer_identifiers_phone_reversed ON customer_identifiers "
        "(reverse(value) text_pattern_ops) WHERE kind = 'phone'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_customer_identifiers_phone_reversed")
    op.execute("DROP INDEX ix_customers_name_folded")
    op.execute("DROP TRIGGER contacts_index_text ON contacts")
    op.execute("DROP TRIGGER cases_index_text ON cases")
    op.drop_table("contact_search_vectors")
    op.drop_table("case_search_vectors")
    op.execute("DROP FUNCTION casegraph_index_contact_text()")
    op.execute("DROP FUNCTION casegraph_index_case_text()")
    op.execute("DROP FUNCTION casegraph_text_search_config()")
    op.execute("DROP FUNCTION casegraph_fold(text)")
