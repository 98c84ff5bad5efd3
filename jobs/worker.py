"""The arq worker: `casegraph worker` runs it, `casegraph serve` runs it beside the API."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings

from app import events, health
from app.runtime import create_runtime
from app.services import archive, mail, search, sla, tasks
from app.settings import JOB_QUEUE, get_settings


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


async def mail_intake(ctx: dict[str, Any], inbound_id: int | None = None) -> dict[str, Any]:
    """Stored inbound messages become recognised contacts (their receipts go to the outbox), in
    batches: the new mail (no id; the listener's and the pollers' job), or one message and new
    ones with it (the sweeper's job)."""
    runtime, send = ctx["runtime"], mail.send_enqueuer(ctx["redis"])
    if inbound_id is None:
        results = await mail.take_in_new_mail(
            runtime, send=send, handover=lambda: mail.enqueue_new_mail_intake(ctx["redis"])
        )
    else:
        results = await mail.take_in_batch(runtime, inbound_id=inbound_id, send=send)
    return {
        "taken": len(results),
        "duplicates": sum(r.duplicate for r in results),
        "autoResponses": sum(r.auto_response is not None for r in results),
    }


async def mail_poll(ctx: dict[str, Any], mailbox_id: int) -> dict[str, Any]:
    """Fetch one IMAP mailbox's new messages."""
    result = await mail.poll_mailbox(ctx["runtime"], mailbox_id=mailbox_id, enqueue=mail.intake_enqueuer(ctx["redis"]))
    return {"fetched": result.fetched, "error": result.error}


async def mail_poll_due(ctx: dict[str, Any]) -> int:
    """Every few seconds: a poll job for each IMAP mailbox whose interval has passed (one at a time per mailbox)."""
    due = await mail.mailboxes_due(ctx["runtime"])
    for mailbox_id in due:
        await ctx["redis"].enqueue_job(
            "mail_poll", mailbox_id, _job_id=f"mail-poll:{mailbox_id}", _queue_name=JOB_QUEUE
        )
    return len(due)


async def mail_send(ctx: dict[str, Any], outbound_id: int) -> dict[str, Any] | None:
    """Send one reply from the outbox through its mailbox's relay (retried later when refused for now)."""
    result = await mail.send_outbound(ctx["runtime"], outbound_id=outbound_id, retry=mail.send_enqueuer(ctx["redis"]))
    return None if result is None else {"status": result.status, "response": result.response}


async def mail_sweep(ctx: dict[str, Any]) -> int:
    """Every minute: intake for stored messages whose job was lost or failed (up to a few attempts),
    and sending for replies whose job was lost."""
    pending = await mail.pending_inbound(ctx["runtime"], older_than=timedelta(minutes=1))
    for inbound_id in pending:
        await mail.enqueue_intake_of(ctx["redis"], inbound_id)
    queued = await mail.queued_outbound(ctx["runtime"], older_than=timedelta(minutes=1))
    send = mail.send_enqueuer(ctx["redis"])
    for outbound_id, attempts in queued:
        await send(outbound_id, attempt=attempts)
    return len(pending) + len(queued)


async def task_reminders(ctx: dict[str, Any]) -> int:
    """Every two seconds: deliver the task reminders that are due (each once), then send their mails."""
    result = await tasks.send_due_reminders(ctx["runtime"])
    send = mail.send_enqueuer(ctx["redis"])
    for outbound_id in result.mails:
        await send(outbound_id)
    return len(result.sent)


async def sla_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Every 30 seconds: mark the warning points and deadlines that passed, once each, and escalate breaches."""
    result = await sla.sweep(ctx["runtime"])
    return {"checked": result.checked, "warnings": result.warnings, "breaches": result.breaches}


async def sla_recompute(ctx: dict[str, Any], policy_id: int | None, region_id: int | None) -> int:
    """After a TAT policy or a region changed: the deadlines of the open cases that use it."""
    return await sla.recompute_open_clocks(ctx["runtime"], policy_id=policy_id, region_id=region_id)


async def search_trim(ctx: dict[str, Any]) -> int:
    """Every ten minutes: cases and contacts past the newest ones leave the recent search indexes."""
    async with ctx["runtime"].transaction() as session:
        return await search.trim_recent_cases(session) + await search.trim_recent_contacts(session)


async def startup(ctx: dict[str, Any]) -> None:
    ctx["runtime"] = create_runtime(get_settings(), pool_size=5)
    await health.beat(ctx["runtime"].redis)
    # IMAP mailboxes that ask for IDLE get a connection waiting for their mail (one per mailbox across workers).
    ctx["mail_idle"] = mail.IdleKeeper(ctx["runtime"], mail.intake_enqueuer(ctx["redis"]))
    ctx["mail_idle"].start()


async def shutdown(ctx: dict[str, Any]) -> None:
    if "mail_idle" in ctx:
        await ctx["mail_idle"].stop()
    await ctx["runtime"].close()


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(get_settings().redis_url)


class WorkerSettings:
    # No result kept: a job id then only guards against a second copy while one waits or runs.
    functions: list = [func(mail_intake, keep_result=0), func(mail_poll, keep_result=0), func(mail_send, keep_result=0)]
    functions.append(func(sla_recompute, keep_result=0))
    cron_jobs = [cron(heartbeat, second={0, 15, 30, 45}, run_at_startup=True)]
    cron_jobs.append(cron(relay_events, second=set(range(0, 60, 5)), unique=True))
    cron_jobs.append(cron(archive_sweep, hour={3}, minute={17}, second={0}, unique=True))
    cron_jobs.append(cron(mail_poll_due, second=set(range(0, 60, 5)), unique=True))
    cron_jobs.append(cron(mail_sweep, second={30}, unique=True))
    cron_jobs.append(cron(task_reminders, second=set(range(0, 60, 2)), unique=True))
    cron_jobs.append(cron(sla_sweep, second={10, 40}, unique=True))
    cron_jobs.append(cron(search_trim, minute=set(range(0, 60, 10)), second={50}, unique=True))
    on_startup = startup
    on_shutdown = shutdown
    queue_name = JOB_QUEUE
    # arq takes new jobs once per poll: at its default half second, ten jobs a poll capped mail
    # intake at 20 messages a second.
    poll_delay = 0.05

    # Resolved when the worker starts, after the embedded servers have exported REDIS_URL.
    @classmethod
    def settings(cls) -> dict[str, Any]:
        return {
            "functions": cls.functions,
            "cron_jobs": cls.cron_jobs,
            "on_startup": cls.on_startup,
            "on_shutdown": cls.on_shutdown,
            "queue_name": cls.queue_name,
            "poll_delay": cls.poll_delay,
            "redis_settings": redis_settings(),
        }


def create_worker(**overrides: Any):
    from arq.worker import Worker

    return Worker(**{**WorkerSettings.settings(), **overrides})


async def close_worker(worker, grace_s: float = 10.0) -> None:
    """Close a stopped worker: the jobs under way get `grace_s` to end, the rest are cancelled (arq runs them again later).

    arq's `close` cancels every job still running, even one only recording its result, and then
    re-raises that cancellation; draining first makes a stop clean.
    """
    running = [task for task in worker.tasks.values() if not task.done()]
    if running:
        _, late = await asyncio.wait(running, timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    worker.tasks.clear()
    await worker.close()
