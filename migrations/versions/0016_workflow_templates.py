"""workflow templates: a workflow's cases open from its case template

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflows", sa.Column("case_template_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_workflows_case_template_id_case_templates",
        "workflows",
        "case_templates",
        ["case_template_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint("fk_workflows_case_template_id_case_templates", "workflows", type_="foreignkey")
    op.drop_column("workflows", "case_template_id")
