"""auth: a user's email is unique (it is how the THREAD rule recognises an agent); tokens by user

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Emails were stored as typed: normalise them as the API now does before making them unique.
    op.execute("UPDATE users SET email = nullif(lower(btrim(email)), '')")
    op.create_index("uq_users_email", "users", ["email"], unique=True)
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_user_id", table_name="api_tokens")
    op.drop_index("uq_users_email", table_name="users")
