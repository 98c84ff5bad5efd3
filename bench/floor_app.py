"""The floor for bench/history.py: the same rows by one asyncpg query, as JSON, on plain Starlette."""

import os
from contextlib import asynccontextmanager

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

QUERY = """
SELECT c.id, c.channel, c.subject, c.occurred_at, k.reference
FROM contacts c LEFT JOIN cases k ON k.id = c.case_id
WHERE c.customer_id = $1
ORDER BY c.occurred_at DESC, c.id DESC
LIMIT 50
"""
state = {}


def _dsn() -> str:
    # postgresql+asyncpg://user@/db?host=/socket -> postgresql://user@/db?host=/socket
    return os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def lifespan(app):
    state["pool"] = await asyncpg.create_pool(_dsn(), min_size=10, max_size=10)
    yield
    await state["pool"].close()


async def history(request):
    rows = await state["pool"].fetch(QUERY, int(request.path_params["customer_id"]))
    body = [
        {
            "id": r["id"],
            "channel": r["channel"],
            "subject": r["subject"],
            "occurredAt": r["occurred_at"].isoformat(),
            "case": {"reference": r["reference"]} if r["reference"] else None,
        }
        for r in rows
    ]
    return Response(orjson.dumps({"data": body}), media_type="application/json")


async def healthz(request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/history/{customer_id}", history), Route("/healthz", healthz)], lifespan=lifespan)
