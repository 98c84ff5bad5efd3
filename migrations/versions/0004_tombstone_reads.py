"""tombstone guards can read without locking: a lock_rows flag on casegraph_live_customer/case

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The same functions as in 0003, with `lock_rows`: writers keep the default (KEY SHARE, so they
# wait for a merge in progress); readers (lookups by number or reference, the recognition engine)
# pass false, so a read never holds a lock that a later write in its transaction could deadlock on.
FUNCTIONS = """
CREATE FUNCTION casegraph_live_customer(customer_id bigint, refuse_erased boolean DEFAULT true, lock_rows boolean DEFAULT true)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    current_id bigint := customer_id;
    found_row record;
BEGIN
    IF customer_id IS NULL THEN
        RETURN NULL;
    END IF;
    FOR hop IN 1..16 LOOP
        IF lock_rows THEN
            SELECT status, merged_into_id INTO found_row FROM customers WHERE id = current_id FOR KEY SHARE;
        ELSE
            SELECT status, merged_into_id INTO found_row FROM customers WHERE id = current_id;
        END IF;
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
CREATE FUNCTION casegraph_live_case(case_id bigint, lock_rows boolean DEFAULT true) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    current_id bigint := case_id;
    target bigint;
BEGIN
    IF case_id IS NULL THEN
        RETURN NULL;
    END IF;
    FOR hop IN 1..16 LOOP
        IF lock_rows THEN
            SELECT merged_into_id INTO target FROM cases WHERE id = current_id FOR KEY SHARE;
        ELSE
            SELECT merged_into_id INTO target FROM cases WHERE id = current_id;
        END IF;
        EXIT WHEN target IS NULL;
        current_id := target;
    END LOOP;
    RETURN current_id;
END $$;
"""


def upgrade() -> None:
    # The trigger functions call these by name at run time, so they may be replaced underneath them.
    op.execute("DROP FUNCTION casegraph_live_customer(bigint, boolean)")
    op.execute("DROP FUNCTION casegraph_live_case(bigint)")
    for statement in FUNCTIONS.split("\n--\n"):
        op.execute(statement)


def downgrade() -> None:
    from importlib import import_module

    previous = import_module("migrations.versions.0003_maintenance").GUARD_FUNCTIONS.split("\n--\n")
    op.execute("DROP FUNCTION casegraph_live_customer(bigint, boolean, boolean)")
    op.execute("DROP FUNCTION casegraph_live_case(bigint, boolean)")
    for statement in previous[:2]:  # the two functions, as 0003 created them
        op.execute(statement)
