"""search screens and searchable custom fields

Custom fields marked searchable are matched through the GIN (jsonb_path_ops) indexes customers
and cases already have on `fields`; saved search screens belong to a user group or to everyone.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("form_fields", sa.Column("searchable", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_table(
        "search_screens",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("columns", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("sort", sa.String(length=16), server_default=sa.text("'relevance'"), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("target IN ('customer', 'case')", name="ck_search_screens_target"),
        sa.CheckConstraint("sort IN ('relevance', 'newest', 'oldest', 'last_activity')", name="ck_search_screens_sort"),
        sa.CheckConstraint("jsonb_typeof(filters) = 'object'", name="ck_search_screens_filters_object"),
        sa.CheckConstraint("jsonb_typeof(columns) = 'array'", name="ck_search_screens_columns_array"),
        sa.ForeignKeyConstraint(
            ["group_id"], ["user_groups.id"], name="fk_search_screens_group_id_user_groups", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_search_screens"),
    )
    op.create_index(
        "uq_search_screens_group_target_name",
        "search_screens",
        ["group_id", "target", "name"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_table("search_screens")
    op.drop_column("form_fields", "searchable")
