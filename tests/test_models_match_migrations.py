"""The models show the tables: Alembic's autogenerate finds nothing between them and the migrated database."""

from __future__ import annotations

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.models import Base


def _defaults_differ(context, inspected_column, metadata_column, inspected, metadata, rendered) -> bool | None:
    """PostgreSQL shows an expression default with its casts ('C-'::text, 'seq'::regclass): compare without them."""
    if inspected is None or rendered is None:
        return None  # Alembic's own comparison
    plain = re.sub(r"::[a-z ]+(\[\])*", "", inspected)
    return plain.strip("'\"") != rendered.strip("'\"")


async def test_models_match_the_migrated_database(runtime):
    def compare(sync_connection):
        context = MigrationContext.configure(
            sync_connection, opts={"compare_type": True, "compare_server_default": _defaults_differ}
        )
        return compare_metadata(context, Base.metadata)

    async with runtime.engine.connect() as conn:
        differences = await conn.run_sync(compare)
    assert differences == []
