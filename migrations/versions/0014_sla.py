"""sla: regions with business hours and holidays, TAT policies, case clocks, user groups and workflows

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("time_zone", sa.Text(), nullable=False),
        sa.Column(
            "business_hours", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False
        ),
        sa.Column("holiday_country", sa.Text(), nullable=True),
        sa.Column("holiday_subdivision", sa.Text(), nullable=True),
        sa.Column("holiday_calendar", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *_times(),
        sa.CheckConstraint("jsonb_typeof(business_hours) = 'array'", name=op.f("ck_regions_business_hours_array")),
        sa.PrimaryKeyConstraint("id", name="pk_regions"),
        sa.UniqueConstraint("name", name="uq_regions_name"),
    )
    op.create_index(
        "uq_regions_default", "regions", ["is_default"], unique=True, postgresql_where=sa.text("is_default")
    )
    op.create_table(
        "tat_policies",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("pause_pending_customer", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("pause_under_consultation", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_tat_policies"),
        sa.UniqueConstraint("code", name="uq_tat_policies_code"),
    )
    op.create_index(
        "uq_tat_policies_default", "tat_policies", ["is_default"], unique=True, postgresql_where=sa.text("is_default")
    )
    op.create_table(
        "tat_targets",
        sa.Column("policy_id", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("minimum_minutes", sa.Integer(), nullable=True),
        sa.Column("maximum_minutes", sa.Integer(), nullable=False),
        sa.CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name=op.f("ck_tat_targets_priority")),
        sa.CheckConstraint("target IN ('response', 'resolution')", name=op.f("ck_tat_targets_target")),
        sa.CheckConstraint("maximum_minutes > 0", name=op.f("ck_tat_targets_maximum_positive")),
        sa.CheckConstraint(
            "minimum_minutes IS NULL OR (minimum_minutes >= 0 AND minimum_minutes <= maximum_minutes)",
            name=op.f("ck_tat_targets_minimum_within_maximum"),
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["tat_policies.id"], name="fk_tat_targets_policy_id_tat_policies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("policy_id", "priority", "target", name="pk_tat_targets"),
    )
    op.create_table(
        "user_groups",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("region_id", sa.BigInteger(), nullable=True),
        sa.Column("pool_id", sa.BigInteger(), nullable=True),
        *_times(),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name="fk_user_groups_region_id_regions", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name="fk_user_groups_pool_id_pools", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_user_groups"),
        sa.UniqueConstraint("name", name="uq_user_groups_name"),
    )
    op.create_index("ix_user_groups_region_id", "user_groups", ["region_id"])
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["user_groups.id"], name="fk_group_members_group_id_user_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_group_members_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_group_members"),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "workflows",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("creator_group_id", sa.BigInteger(), nullable=True),
        sa.Column("resolver_group_id", sa.BigInteger(), nullable=True),
        sa.Column("escalator_group_id", sa.BigInteger(), nullable=True),
        sa.Column("tat_policy_id", sa.BigInteger(), nullable=True),
        sa.Column("default_pool_id", sa.BigInteger(), nullable=True),
        sa.Column("escalation", sa.String(length=8), server_default="notify", nullable=False),
        *_times(),
        sa.CheckConstraint("escalation IN ('notify', 'assign')", name=op.f("ck_workflows_escalation")),
        sa.ForeignKeyConstraint(
            ["creator_group_id"],
            ["user_groups.id"],
            name="fk_workflows_creator_group_id_user_groups",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resolver_group_id"],
            ["user_groups.id"],
            name="fk_workflows_resolver_group_id_user_groups",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["escalator_group_id"],
            ["user_groups.id"],
            name="fk_workflows_escalator_group_id_user_groups",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tat_policy_id"], ["tat_policies.id"], name="fk_workflows_tat_policy_id_tat_policies", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["default_pool_id"], ["pools.id"], name="fk_workflows_default_pool_id_pools", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint("code", name="uq_workflows_code"),
    )
    op.create_table(
        "workflow_modes",
        sa.Column("workflow_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.CheckConstraint("mode IN ('creator', 'resolver', 'both')", name=op.f("ck_workflow_modes_mode")),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name="fk_workflow_modes_workflow_id_workflows", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_workflow_modes_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workflow_id", "user_id", name="pk_workflow_modes"),
    )
    op.create_index("ix_workflow_modes_user_id", "workflow_modes", ["user_id"])
    op.add_column("cases", sa.Column("workflow_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_cases_workflow_id_workflows", "cases", "workflows", ["workflow_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index(
        "ix_cases_workflow_id", "cases", ["workflow_id"], postgresql_where=sa.text("workflow_id IS NOT NULL")
    )
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "case_slas",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("policy_id", sa.BigInteger(), nullable=True),
        sa.Column("region_id", sa.BigInteger(), nullable=True),
        sa.Column("started_at", stamp, nullable=False),
        sa.Column("paused_at", stamp, nullable=True),
        sa.Column("paused_seconds", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("first_responded_at", stamp, nullable=True),
        sa.Column("resolved_at", stamp, nullable=True),
        sa.Column("response_warn_at", stamp, nullable=True),
        sa.Column("response_due_at", stamp, nullable=True),
        sa.Column("resolution_warn_at", stamp, nullable=True),
        sa.Column("resolution_due_at", stamp, nullable=True),
        sa.Column("response_warned_at", stamp, nullable=True),
        sa.Column("response_breached_at", stamp, nullable=True),
        sa.Column("resolution_warned_at", stamp, nullable=True),
        sa.Column("resolution_breached_at", stamp, nullable=True),
        sa.Column("escalated_group_id", sa.BigInteger(), nullable=True),
        sa.Column("next_check_at", stamp, nullable=True),
        sa.Column("updated_at", stamp, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_case_slas_case_id_cases", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["tat_policies.id"], name="fk_case_slas_policy_id_tat_policies", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name="fk_case_slas_region_id_regions", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["escalated_group_id"],
            ["user_groups.id"],
            name="fk_case_slas_escalated_group_id_user_groups",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("case_id", name="pk_case_slas"),
    )
    op.create_index(
        "ix_case_slas_next_check_at",
        "case_slas",
        ["next_check_at"],
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    # The one rule for when the SLA sweep next looks at a clock: the earliest warning point or
    # deadline not yet marked while the clock runs (not paused, not resolved) and, for the first
    # response, until the case is answered. A trigger, so that no write can leave it stale.
    op.execute("""
        CREATE FUNCTION casegraph_sla_next_check() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.next_check_at := CASE WHEN NEW.paused_at IS NULL AND NEW.resolved_at IS NULL THEN LEAST(
                CASE WHEN NEW.response_warned_at IS NULL AND NEW.first_responded_at IS NULL THEN NEW.response_warn_at END,
                CASE WHEN NEW.response_breached_at IS NULL AND NEW.first_responded_at IS NULL THEN NEW.response_due_at END,
                CASE WHEN NEW.resolution_warned_at IS NULL THEN NEW.resolution_warn_at END,
                CASE WHEN NEW.resolution_breached_at IS NULL THEN NEW.resolution_due_at END) END;
            RETURN NEW;
        END $$
    """)
    op.execute(
        "CREATE TRIGGER case_slas_next_check BEFORE INSERT OR UPDATE ON case_slas "
        "FOR EACH ROW EXECUTE FUNCTION casegraph_sla_next_check()"
    )
    op.create_index("ix_case_slas_policy_id", "case_slas", ["policy_id"])
    # SLA notifications leave through the mail outbox as their own kind.
    op.drop_constraint(op.f("ck_outbound_messages_kind"), "outbound_messages", type_="check")
    op.create_check_constraint(
        op.f("ck_outbound_messages_kind"),
        "outbound_messages",
        "kind IN ('reply', 'auto_response', 'task_reminder', 'notification')",
    )
    op.create_index("ix_case_slas_region_id", "case_slas", ["region_id"])


def downgrade() -> None:
    op.execute("DELETE FROM outbound_messages WHERE kind = 'notification'")
    op.drop_constraint(op.f("ck_outbound_messages_kind"), "outbound_messages", type_="check")
    op.create_check_constraint(
        op.f("ck_outbound_messages_kind"), "outbound_messages", "kind IN ('reply', 'auto_response', 'task_reminder')"
    )
    op.drop_table("case_slas")
    op.execute("DROP FUNCTION casegraph_sla_next_check()")
    op.drop_index("ix_cases_workflow_id", table_name="cases")
    op.drop_constraint("fk_cases_workflow_id_workflows", "cases", type_="foreignkey")
    op.drop_column("cases", "workflow_id")
    op.drop_table("workflow_modes")
    op.drop_table("workflows")
    op.drop_table("group_members")
    op.drop_table("user_groups")
    op.drop_table("tat_targets")
    op.drop_table("tat_policies")
    op.drop_table("regions")
