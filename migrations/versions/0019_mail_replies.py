"""mail replies: canned reply templates, agent and mailbox signatures

Revision ID: 0019
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("signature", sa.Text(), nullable=True))
    op.add_column("mailboxes", sa.Column("signature_template", sa.Text(), nullable=True))
    op.create_table(
        "reply_templates",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("pool_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_reply_templates_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reply_templates")),
    )
    op.create_index(
        "uq_reply_templates_global_name",
        "reply_templates",
        ["name"],
        unique=True,
        postgresql_where=sa.text("pool_id IS NULL"),
    )
    op.create_index(
        "uq_reply_templates_pool_name",
        "reply_templates",
        ["pool_id", "name"],
        unique=True,
        postgresql_where=sa.text("pool_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("reply_templates")
    op.drop_column("mailboxes", "signature_template")
    op.drop_column("users", "signature")
