"""Liveness of the worker (a heartbeat in Redis) and readiness of the process's dependencies."""

from __future__ import annotations

import time

from redis.asyncio import Redis
from sqlalchemy import text

from app.runtime import Runtime

HEARTBEAT_KEY = "casegraph:worker:heartbeat"
HEARTBEAT_MAX_AGE = 90  # seconds; the worker beats every 15


async def beat(redis: Redis) -> None:
    await redis.set(HEARTBEAT_KEY, str(time.time()), ex=HEARTBEAT_MAX_AGE * 2)


async def readiness(runtime: Runtime) -> dict[str, str]:
    """'ok' or the reason, for the database, Redis and the worker."""
    checks: dict[str, str] = {}
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        last = await runtime.redis.get(HEARTBEAT_KEY)
        checks["redis"] = "ok"
        age = time.time() - float(last) if last else None
        checks["worker"] = "ok" if age is not None and age < HEARTBEAT_MAX_AGE else "no recent heartbeat"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
        checks["worker"] = "unknown"
    return checks
