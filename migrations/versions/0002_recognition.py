"""recognition rules, promotion rules, no-match policies; contact candidates; default rule set

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of app/recognition/defaults.py at the time of this revision.
DEFAULT_RULES = [
    (
        "Case reference in subject or text",
        "case",
        "reference_in_text",
        {"pattern": r"(?i)\b(CASE-\d{6,})\b", "fields": ["subject", "text"]},
        1,
        [],
    ),
    ("Email thread", "case", "thread", {"require_known_sender": True}, 2, ["email"]),
    ("Sender email", "customer", "identifier", {"kind": "email", "source": "from"}, 3, []),
    ("Sender phone", "customer", "identifier", {"kind": "phone", "source": "from"}, 4, []),
]
DEFAULT_POLICIES = {
    "email": (True, True, False),
    "web": (True, True, False),
    "phone": (False, False, True),
    "chat": (False, False, True),
    "sms": (False, False, True),
    "social": (False, False, True),
    "note": (False, False, False),
}


def upgrade() -> None:
    rules = op.create_table(
        "recognition_rules",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("channels", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("target IN ('case', 'customer')", name=op.f("ck_recognition_rules_target")),
        sa.CheckConstraint(
            "kind IN ('reference_in_text', 'thread', 'external_reference', 'open_case_of_customer', "
            "'identifier', 'field_match', 'lookup')",
            name=op.f("ck_recognition_rules_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognition_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_recognition_rules_name")),
    )
    op.create_table(
        "promotion_rules",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("channels", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("target IN ('case', 'customer')", name=op.f("ck_promotion_rules_target")),
        sa.CheckConstraint(
            "policy IN ('fill_empty', 'overwrite', 'add_identifier')", name=op.f("ck_promotion_rules_policy")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_promotion_rules_name")),
    )
    policies = op.create_table(
        "no_match_policies",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("create_customer", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("create_case", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("flag_for_review", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'phone', 'chat', 'sms', 'web', 'social', 'note')",
            name=op.f("ck_no_match_policies_channel"),
        ),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_no_match_policies")),
    )
    op.execute("CREATE SEQUENCE recognition_config_version_seq")
    op.create_table(
        "recognition_config",
        sa.Column("id", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_recognition_config_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognition_config")),
    )
    op.execute("INSERT INTO recognition_config (id, version) VALUES (1, nextval('recognition_config_version_seq'))")
    op.add_column(
        "contacts",
        sa.Column(
            "candidate_customer_ids", postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'"), nullable=False
        ),
    )
    op.create_index(
        "ix_customers_fields",
        "customers",
        ["fields"],
        postgresql_using="gin",
        postgresql_ops={"fields": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_cases_fields", "cases", ["fields"], postgresql_using="gin", postgresql_ops={"fields": "jsonb_path_ops"}
    )
    op.bulk_insert(
        rules,
        [
            {"name": n, "target": t, "kind": k, "config": c, "position": p, "channels": ch, "enabled": True}
            for n, t, k, c, p, ch in DEFAULT_RULES
        ],
    )
    op.bulk_insert(
        policies,
        [
            {"channel": ch, "create_customer": c, "create_case": k, "flag_for_review": r}
            for ch, (c, k, r) in DEFAULT_POLICIES.items()
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_cases_fields", table_name="cases")
    op.drop_index("ix_customers_fields", table_name="customers")
    op.drop_column("contacts", "candidate_customer_ids")
    op.drop_table("recognition_config")
    op.execute("DROP SEQUENCE recognition_config_version_seq")
    op.drop_table("no_match_policies")
    op.drop_table("promotion_rules")
    op.drop_table("recognition_rules")
