"""input limits: custom fields, headers and payloads are JSON objects

A value stored before the API refused non-objects is kept, wrapped as {"value": ...}. The
constraints are added NOT VALID and then validated, so the tables stay writable meanwhile.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OBJECT_COLUMNS = [("customers", "fields"), ("cases", "fields"), ("contacts", "headers"), ("contacts", "payload")]


def upgrade() -> None:
    for table, column in OBJECT_COLUMNS:
        name = f"ck_{table}_{column}_object"
        op.execute(
            f"UPDATE {table} SET {column} = jsonb_build_object('value', {column}) "
            f"WHERE jsonb_typeof({column}) <> 'object'"
        )
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (jsonb_typeof({column}) = 'object') NOT VALID")
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for table, column in OBJECT_COLUMNS:
        op.drop_constraint(op.f(f"ck_{table}_{column}_object"), table, type_="check")
