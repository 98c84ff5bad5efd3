"""The arq worker: `casegraph worker` runs it, `casegraph serve` runs it beside the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import RedisSettings

from app import events, health
from app.runtime import create_runtime
from app.services import archive
from app.settings import get_settings


async def heartbeat(ctx: dict[str, Any]) -> None:
    await health.beat(ctx["runtime"].redis)


async def archive_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Daily: apply the archive rules (archive inactive records, expire those past retention)."""
    result = await archive.sweep(ctx["runtime"])
    return {"archived": result.archived, "expired": result.expired, "batches": result.batches}


async def relay_events(ctx: dict[str, Any]) -> int:
    """Every few seconds: publish change events whose publication after commit failed."""
    runtime = ctx["runtime"]
    return await events.relay(
        runtime.sessionmaker, runtime.redis, retain=runtime.settings.events_retained, older_than=timedelta(seconds=5)
    )


async def startup(ctx: dict[str, Any]) -> None:
    ctx["runtime"] = create_runtime(get_settings(), pool_size=5)
    await health.beat(ctx["runtime"].redis)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["runtime"].close()


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(get_settings().redis_url)


class WorkerSettings:
    functions: list = []
    cron_jobs = [cron(heartbeat, second={0, 15, 30, 45}, run_at_startup=True)]
    cron_jobs.append(cron(relay_events, second=set(range(0, 60, 5)), unique=True))
    cron_jobs.append(cron(archive_sweep, hour={3}, minute={17}, second={0}, unique=True))
    on_startup = startup
    on_shutdown = shutdown
    queue_name = "casegraph:queue"

    # Resolved when the worker starts, after the embedded servers have exported REDIS_URL.
    @classmethod
    def settings(cls) -> dict[str, Any]:
        return {
            "functions": cls.functions,
            "cron_jobs": cls.cron_jobs,
            "on_startup": cls.on_startup,
            "on_shutdown": cls.on_shutdown,
            "queue_name": cls.queue_name,
            "redis_settings": redis_settings(),
        }


def create_worker(**overrides: Any):
    from arq.worker import Worker

    return Worker(**{**WorkerSettings.settings(), **overrides})
