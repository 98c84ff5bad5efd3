"""connectors: signing secrets leave the database; REFERENCE_IN_TEXT checks the sender

A lookup connector's secret now lives only in a CASEGRAPH_SECRET_* environment variable that the
rule names in `secret_env`. Secrets stored in clear by earlier versions are removed from the rules
and from the audit events that recorded them; such a rule signs nothing until an administrator
sets the variable and names it.

REFERENCE_IN_TEXT rules gain `require_known_sender` (on, as THREAD): a stranger quoting a case's
reference is no longer put on that case.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The places a secret was kept: a LOOKUP rule's config, an EXTERNAL_REFERENCE rule's connector.
_PATHS = ("{secret}", "{connector,secret}")


def upgrade() -> None:
    for path in _PATHS:
        op.execute(f"UPDATE recognition_rules SET config = config #- '{path}' WHERE config #> '{path}' IS NOT NULL")
        for column in ("before", "after"):
            op.execute(
                f"UPDATE audit_events SET {column} = {column} #- '{{config,{path[1:-1]}}}' "
                f"WHERE entity_type = 'recognition_rule' AND {column} #> '{{config,{path[1:-1]}}}' IS NOT NULL"
            )
    op.execute(
        "UPDATE recognition_rules SET config = config || '{\"require_known_sender\": true}' "
        "WHERE kind = 'reference_in_text' AND NOT config ? 'require_known_sender'"
    )


def downgrade() -> None:
    pass  # a removed secret is not restored
