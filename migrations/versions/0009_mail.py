"""mail: pools, supervised mailboxes, inbound messages stored as they arrived

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _one_of(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("auto_response_subject", sa.Text(), nullable=True),
        sa.Column("auto_response_text", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_pools_name")),
    )
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("pool_id", sa.BigInteger(), nullable=True),
        sa.Column("intake", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("imap_host", sa.Text(), nullable=True),
        sa.Column("imap_port", sa.Integer(), nullable=True),
        sa.Column("imap_security", sa.String(8), server_default="tls", nullable=False),
        sa.Column("imap_user", sa.Text(), nullable=True),
        sa.Column("imap_secret_env", sa.Text(), nullable=True),
        sa.Column("imap_folder", sa.Text(), server_default="INBOX", nullable=False),
        sa.Column("imap_mark", sa.String(8), server_default="flag", nullable=False),
        sa.Column("imap_move_to", sa.Text(), nullable=True),
        sa.Column("imap_idle", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("poll_seconds", sa.Integer(), server_default=sa.text("60"), nullable=False),
        sa.Column("relay_host", sa.Text(), nullable=True),
        sa.Column("relay_port", sa.Integer(), nullable=True),
        sa.Column("relay_security", sa.String(8), server_default="starttls", nullable=False),
        sa.Column("relay_user", sa.Text(), nullable=True),
        sa.Column("relay_secret_env", sa.Text(), nullable=True),
        sa.Column("relay_from", sa.Text(), nullable=True),
        sa.Column("auto_response_subject", sa.Text(), nullable=True),
        sa.Column("auto_response_text", sa.Text(), nullable=True),
        sa.Column("imap_uid_validity", sa.BigInteger(), nullable=True),
        sa.Column("imap_last_uid", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(_one_of("intake", ("imap", "smtp")), name=op.f("ck_mailboxes_intake")),
        sa.CheckConstraint(
            _one_of("imap_security", ("tls", "starttls", "none")), name=op.f("ck_mailboxes_imap_security")
        ),
        sa.CheckConstraint(
            _one_of("relay_security", ("tls", "starttls", "none")), name=op.f("ck_mailboxes_relay_security")
        ),
        sa.CheckConstraint(_one_of("imap_mark", ("flag", "move")), name=op.f("ck_mailboxes_imap_mark")),
        sa.CheckConstraint("poll_seconds >= 5", name=op.f("ck_mailboxes_poll_seconds")),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_mailboxes_pool_id_pools"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailboxes")),
        sa.UniqueConstraint("address", name=op.f("uq_mailboxes_address")),
    )
    op.add_column("cases", sa.Column("pool_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_cases_pool_id_pools"), "cases", "pools", ["pool_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_cases_pool_id_id", "cases", ["pool_id", "id"], postgresql_where=sa.text("pool_id IS NOT NULL"))
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("mailbox_id", sa.BigInteger(), nullable=True),
        sa.Column("via", sa.String(8), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("envelope_from", sa.Text(), nullable=True),
        sa.Column("envelope_to", postgresql.JSONB(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("imap_uid_validity", sa.BigInteger(), nullable=True),
        sa.Column("imap_uid", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(8), server_default="pending", nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("problems", postgresql.JSONB(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_one_of("via", ("imap", "smtp")), name=op.f("ck_inbound_messages_via")),
        sa.CheckConstraint(_one_of("status", ("pending", "done")), name=op.f("ck_inbound_messages_status")),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"], name=op.f("fk_inbound_messages_mailbox_id_mailboxes"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_inbound_messages_contact_id_contacts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    op.create_index(
        "uq_inbound_messages_imap_uid",
        "inbound_messages",
        ["mailbox_id", "imap_uid_validity", "imap_uid"],
        unique=True,
        postgresql_where=sa.text("imap_uid IS NOT NULL"),
    )
    op.create_index(
        "ix_inbound_messages_pending", "inbound_messages", ["id"], postgresql_where=sa.text("status = 'pending'")
    )

    op.create_table(
        "blobs",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("inline", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("content_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_attachments_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name=op.f("fk_attachments_sha256_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    op.create_index("ix_attachments_contact_id", "attachments", ["contact_id", "id"])
    op.create_index("ix_attachments_sha256", "attachments", ["sha256"])
    op.create_table(
        "outbound_messages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("mailbox_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), server_default="reply", nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("envelope_from", sa.Text(), nullable=False),
        sa.Column("envelope_to", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(8), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(_one_of("status", ("queued", "sent", "failed")), name=op.f("ck_outbound_messages_status")),
        sa.CheckConstraint(_one_of("kind", ("reply", "auto_response")), name=op.f("ck_outbound_messages_kind")),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_outbound_messages_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_outbound_messages_mailbox_id_mailboxes"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_messages")),
    )
    op.create_index("ix_outbound_messages_contact_id", "outbound_messages", ["contact_id"])
    op.create_index(
        "ix_outbound_messages_auto_responses",
        "outbound_messages",
        ["created_at"],
        postgresql_where=sa.text("kind = 'auto_response'"),
    )
    op.create_index(
        "ix_outbound_messages_queued",
        "outbound_messages",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_table("outbound_messages")
    op.drop_table("attachments")
    op.drop_table("blobs")
    op.drop_table("inbound_messages")
    op.drop_table("mailboxes")
    op.drop_index("ix_cases_pool_id_id", table_name="cases")
    op.drop_constraint(op.f("fk_cases_pool_id_pools"), "cases", type_="foreignkey")
    op.drop_column("cases", "pool_id")
    op.drop_table("pools")
