"""forms: reason codes, dictionaries, case templates and the field definitions of forms

Reason codes become a table: the default set is seeded, and any code cases already hold is kept
as an inactive code (its description the code itself) so that history stays readable; cases then
refer to reason codes by code.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# (code, description, category), in the order agents see them. Frozen: later changes are made by supervisors.
DEFAULT_REASON_CODES = [
    ("completed", "Completed", "closed"),
    ("not-a-problem", "Not a problem", "closed"),
    ("rejected", "Rejected", "closed"),
    ("duplicate", "Duplicate of another case", "closed"),
    ("no-response", "No response from the customer", "closed"),
    ("merged", "Merged into another case", "closed"),
    ("customer-replied", "The customer replied", "in_progress"),
    ("reopened", "Reopened", "in_progress"),
    ("needs-approval", "Needs approval", "under_consultation"),
    ("awaiting-customer", "Waiting for the customer", "pending_customer"),
]
CATEGORIES = ("received", "in_progress", "under_consultation", "pending_customer", "closed")
FIELD_TYPES = ("text", "number", "date", "boolean", "dropdown", "fixed_format", "email", "phone")
PRIORITIES = ("low", "normal", "high", "urgent")


def _one_of(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamps():
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "reason_codes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(_one_of("category", CATEGORIES), name="ck_reason_codes_category"),
        sa.PrimaryKeyConstraint("id", name="pk_reason_codes"),
        sa.UniqueConstraint("code", name="uq_reason_codes_code"),
    )
    op.bulk_insert(
        sa.table(
            "reason_codes", sa.column("code"), sa.column("description"), sa.column("category"), sa.column("position")
        ),
        [
            {"code": c, "description": d, "category": k, "position": i}
            for i, (c, d, k) in enumerate(DEFAULT_REASON_CODES)
        ],
    )
    # Codes typed freely before this revision stay readable, but are no longer offered.
    op.execute("""
        INSERT INTO reason_codes (code, description, category, active, position)
        SELECT DISTINCT ON (reason_code) reason_code, reason_code,
               CASE status WHEN 'new' THEN 'received' WHEN 'open' THEN 'in_progress'
                           WHEN 'consultation' THEN 'under_consultation' WHEN 'pending' THEN 'pending_customer'
                           ELSE 'closed' END,
               false, 1000
        FROM cases WHERE reason_code IS NOT NULL
        ON CONFLICT (code) DO NOTHING
    """)
    op.create_foreign_key("fk_cases_reason_code_reason_codes", "cases", "reason_codes", ["reason_code"], ["code"])
    op.create_index(
        "ix_cases_reason_code", "cases", ["reason_code"], postgresql_where=sa.text("reason_code IS NOT NULL")
    )

    op.create_table(
        "dictionaries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("pool_id", sa.BigInteger(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name="fk_dictionaries_pool_id_pools", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_dictionaries"),
        sa.UniqueConstraint("name", name="uq_dictionaries_name"),
    )
    op.create_index(
        "ix_dictionaries_pool_id", "dictionaries", ["pool_id"], postgresql_where=sa.text("pool_id IS NOT NULL")
    )
    op.create_table(
        "dictionary_entries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("dictionary_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.ForeignKeyConstraint(
            ["dictionary_id"],
            ["dictionaries.id"],
            name="fk_dictionary_entries_dictionary_id_dictionaries",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dictionary_entries"),
        sa.UniqueConstraint("dictionary_id", "value", name="uq_dictionary_entries_dictionary_id"),
    )

    op.create_table(
        "case_templates",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("pool_id", sa.BigInteger(), nullable=True),
        sa.Column("fields", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(_one_of("priority", PRIORITIES), name="ck_case_templates_priority"),
        sa.CheckConstraint("jsonb_typeof(fields) = 'object'", name="ck_case_templates_fields_object"),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name="fk_case_templates_pool_id_pools", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_case_templates"),
        sa.UniqueConstraint("name", name="uq_case_templates_name"),
    )
    op.add_column("cases", sa.Column("template_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key("fk_cases_template_id_case_templates", "cases", "case_templates", ["template_id"], ["id"])
    op.create_index(
        "ix_cases_template_id", "cases", ["template_id"], postgresql_where=sa.text("template_id IS NOT NULL")
    )

    op.create_table(
        "form_fields",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("mandatory", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("help_text", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("dictionary_id", sa.BigInteger(), nullable=True),
        sa.Column("pattern", sa.Text(), nullable=True),
        sa.Column("pattern_message", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(_one_of("type", FIELD_TYPES), name="ck_form_fields_type"),
        sa.CheckConstraint(
            "(type = 'dropdown') = (dictionary_id IS NOT NULL)", name="ck_form_fields_dropdown_dictionary"
        ),
        sa.CheckConstraint(
            "(type = 'fixed_format') = (pattern IS NOT NULL)", name="ck_form_fields_fixed_format_pattern"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"], ["case_templates.id"], name="fk_form_fields_template_id_case_templates", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["dictionary_id"],
            ["dictionaries.id"],
            name="fk_form_fields_dictionary_id_dictionaries",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_form_fields"),
    )
    op.create_index(
        "uq_form_fields_template_key",
        "form_fields",
        ["template_id", "key"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_index(
        "ix_form_fields_dictionary_id",
        "form_fields",
        ["dictionary_id"],
        postgresql_where=sa.text("dictionary_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("form_fields")
    op.drop_index("ix_cases_template_id", table_name="cases")
    op.drop_constraint("fk_cases_template_id_case_templates", "cases", type_="foreignkey")
    op.drop_column("cases", "template_id")
    op.drop_table("case_templates")
    op.drop_table("dictionary_entries")
    op.drop_table("dictionaries")
    op.drop_index("ix_cases_reason_code", table_name="cases")
    op.drop_constraint("fk_cases_reason_code_reason_codes", "cases", type_="foreignkey")
    op.drop_table("reason_codes")
