"""name words: customerSearch finds a name by its words through an index, not by ranking every
customer who shares one of them

`casegraph_name_words` splits a folded name into its words; customers are indexed by that array,
and `customer_name_words` is the dictionary of the words names hold (a trigram index finds the
words alike a typed one). Triggers keep the dictionary: a word comes in with the first name that
holds it and leaves with the last (an erased name leaves nothing behind).

Revision ID: 0021
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Qualified: index builds run with an empty search path. Words split at spaces and punctuation
    # as pg_trgm does ("O'Brien" is "o" and "brien").
    op.execute(
        "CREATE FUNCTION casegraph_name_words(value text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "STRICT AS $$ SELECT array_remove(regexp_split_to_array(public.casegraph_fold(value), "
        "'[[:space:][:punct:]]+'), '') $$"
    )
    op.create_table(
        "customer_name_words",
        sa.Column("word", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("word", name="pk_customer_name_words"),
    )
    # Without a pending list: every search would read it whole, and a name adds only a few entries.
    op.execute(
        "CREATE INDEX ix_customer_name_words_word_trgm ON customer_name_words USING gin (word gin_trgm_ops) "
        "WITH (fastupdate = off)"
    )
    op.execute(
        "CREATE INDEX ix_customers_name_words ON customers USING gin (casegraph_name_words(name)) "
        "WITH (fastupdate = off)"
    )
    op.execute(
        "INSERT INTO customer_name_words (word) SELECT DISTINCT unnest(casegraph_name_words(name)) FROM customers"
    )
    op.execute("""
        CREATE FUNCTION casegraph_keep_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'DELETE' THEN
                -- Locks the words it finds, so that a concurrent removal of the last holder waits.
                INSERT INTO customer_name_words (word) SELECT DISTINCT unnest(casegraph_name_words(NEW.name))
                ON CONFLICT (word) DO UPDATE SET word = EXCLUDED.word WHERE false;
            END IF;
            IF TG_OP <> 'INSERT' THEN
                DELETE FROM customer_name_words d
                WHERE d.word = ANY(casegraph_name_words(OLD.name))
                  AND (TG_OP = 'DELETE' OR NOT d.word = ANY(coalesce(casegraph_name_words(NEW.name), '{}')))
                  AND NOT EXISTS (SELECT 1 FROM customers c WHERE casegraph_name_words(c.name) @> ARRAY[d.word]);
            END IF;
            RETURN NULL;
        END $$""")
    op.execute(
        "CREATE TRIGGER customers_keep_name_words AFTER INSERT OR DELETE OR UPDATE OF name ON customers "
        "FOR EACH ROW EXECUTE FUNCTION casegraph_keep_name_words()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER customers_keep_name_words ON customers")
    op.execute("DROP FUNCTION casegraph_keep_name_words()")
    op.execute("DROP INDEX ix_customers_name_words")
    op.drop_table("customer_name_words")
    op.execute("DROP FUNCTION casegraph_name_words(text)")
