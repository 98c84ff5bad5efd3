"""full names: customerSearch ranks the distinct names alike what was typed, then reads only the
holders of the best of them, not every customer who holds a word alike each typed word

`customer_full_names` is the dictionary of the distinct folded names customers hold, indexed by
their words; customers are indexed by their folded name. A name search intersects the words of
ten thousand names rather than of a million customers, and reads holders name by name, best name
first, until it has enough. The trigger of 0021 now keeps both dictionaries: a full name leaves
with its last holder, and a word with the last full name holding it (so the customers' name-words
index is no longer needed).

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

KEEP_NAME_WORDS_0021 = """
CREATE OR REPLACE FUNCTION casegraph_keep_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
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
END $$"""


def upgrade() -> None:
    op.create_table(
        "customer_full_names",
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_customer_full_names"),
    )
    op.execute(
        "CREATE INDEX ix_customer_full_names_words ON customer_full_names USING gin (casegraph_name_words(name)) "
        "WITH (fastupdate = off)"
    )
    op.execute("CREATE INDEX ix_customers_folded_name ON customers (casegraph_fold(name), id)")
    op.execute(
        "INSERT INTO customer_full_names (name) "
        "SELECT DISTINCT casegraph_fold(name) FROM customers WHERE name IS NOT NULL"
    )
    op.execute("""
        CREATE OR REPLACE FUNCTION casegraph_keep_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'DELETE' AND NEW.name IS NOT NULL THEN
                -- Locks the rows it finds, so that a concurrent removal of the last holder waits.
                INSERT INTO customer_full_names (name) VALUES (casegraph_fold(NEW.name))
                ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name WHERE false;
                INSERT INTO customer_name_words (word) SELECT DISTINCT unnest(casegraph_name_words(NEW.name))
                ON CONFLICT (word) DO UPDATE SET word = EXCLUDED.word WHERE false;
            END IF;
            IF TG_OP <> 'INSERT' AND OLD.name IS NOT NULL
               AND (TG_OP = 'DELETE' OR casegraph_fold(OLD.name) IS DISTINCT FROM casegraph_fold(NEW.name)) THEN
                DELETE FROM customer_full_names f
                WHERE f.name = casegraph_fold(OLD.name)
                  AND NOT EXISTS (SELECT 1 FROM customers c WHERE casegraph_fold(c.name) = f.name);
                IF FOUND THEN
                    DELETE FROM customer_name_words d
                    WHERE d.word = ANY(casegraph_name_words(OLD.name))
                      AND NOT EXISTS (
                          SELECT 1 FROM customer_full_names f WHERE casegraph_name_words(f.name) @> ARRAY[d.word]);
                END IF;
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("DROP INDEX ix_customers_name_words")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX ix_customers_name_words ON customers USING gin (casegraph_name_words(name)) "
        "WITH (fastupdate = off)"
    )
    op.execute(KEEP_NAME_WORDS_0021)
    op.execute("DROP INDEX ix_customers_folded_name")
    op.drop_table("customer_full_names")
