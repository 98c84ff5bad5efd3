"""Benchmark: the SLA sweep over a million open cases, and deadline computation at case creation.

Bulk-loads open cases with clocks whose next check lies in the future (generate_series, not the
ORM), then makes 0.1% and then 1% of them due and times one sweep at each: the sweep reads only
the due clocks through the partial index on `next_check_at`, so ten times the due cases should
cost about ten times as much (`sweep_ratio`, goal ≤ 15) whatever the number of open cases (goal:
a 1% sweep ≤ 2 s). For comparison it times the scan a sweep without that index would need
(`scan_ms`: the due cases found by their deadlines across every open clock). Deadline computation
is timed per case creation: the business-calendar arithmetic alone (a 9-to-5 region with public
and iCal holidays) and the whole clock start with its queries. The last line is one JSON object.

    python bench/sla.py [--cases 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from _common import embedded_servers

LOAD_CASES = """
INSERT INTO cases (id, reference, subject, status, priority, created_at, updated_at)
SELECT g, 'CASE-' || lpad(g::text, 7, '0'), 'Case ' || g, 'open', 'normal', now() - interval '1 hour', now()
FROM generate_series(1, :n) AS g
"""
# Deadlines spread over the coming weeks; nothing is due yet.
LOAD_CLOCKS = """
INSERT INTO case_slas (case_id, policy_id, region_id, started_at, response_due_at, resolution_warn_at,
                       resolution_due_at, first_responded_at)
SELECT g, :policy, :region, now() - interval '1 hour', now() + interval '1 hour',
       now() + (g % 5000) * interval '5 minutes', now() + interval '1 hour' + (g % 5000) * interval '5 minutes',
       now() - interval '30 minutes'
FROM generate_series(1, :n) AS g
"""
MAKE_DUE = """
UPDATE case_slas SET resolution_warn_at = :past, resolution_due_at = :past,
                     resolution_warned_at = NULL, resolution_breached_at = NULL
WHERE case_id % :every = 0
"""
SCAN = "SELECT count(*) FROM case_slas WHERE resolution_breached_at IS NULL AND resolution_due_at <= :now"


async def prepare(n: int) -> tuple[int, int]:
    from sqlalchemy import text

    from app.auth import SYSTEM
    from app.runtime import create_runtime
    from app.services import calendars, sla
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=2)
    try:
        async with runtime.transaction() as session:
            region = await calendars.create_region(
                session,
                actor=SYSTEM,
                name="London",
                time_zone="Europe/London",
                business_hours=[{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
                holiday_country="GB",
                holiday_subdivision="ENG",
                is_default=True,
            )
            policy = await sla.create_policy(
                session,
                actor=SYSTEM,
                code="STANDARD",
                targets=[
                    {"priority": "normal", "target": "response", "minimum_minutes": 60, "maximum_minutes": 240},
                    {"priority": "normal", "target": "resolution", "minimum_minutes": 960, "maximum_minutes": 2400},
                ],
                is_default=True,
            )
        async with runtime.engine.begin() as conn:
            # A bulk load: no per-row triggers (text search) or foreign-key checks.
            await conn.execute(text("SET session_replication_role = replica"))
            await conn.execute(text(LOAD_CASES), {"n": n})
            # The clocks' own trigger sets their next check.
            await conn.execute(text("SET session_replication_role = origin"))
            await conn.execute(text(LOAD_CLOCKS), {"n": n, "policy": policy.id, "region": region.id})
            await conn.execute(text("SELECT setval('cases_id_seq', :n)"), {"n": n})
        async with runtime.engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("VACUUM ANALYZE cases"))
            await conn.execute(text("VACUUM ANALYZE case_slas"))
        return policy.id, region.id
    finally:
        await runtime.close()


async def sweep_at(every: int) -> tuple[float, int, float]:
    """Make one case in `every` due, then time one sweep (and the scan a sweep without the index needs)."""
    from sqlalchemy import text

    from app.runtime import create_runtime
    from app.services import sla
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=2)
    try:
        now = datetime.now(UTC)
        async with runtime.engine.begin() as conn:
            await conn.execute(text(MAKE_DUE), {"past": now - timedelta(minutes=1), "every": every})
        async with runtime.engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE case_slas"))
            started = time.perf_counter()
            await conn.execute(text(SCAN), {"now": now})
            scan = time.perf_counter() - started
        # A running worker's connections are open: open them before timing.
        async with runtime.transaction() as session:
            await session.execute(text("SELECT 1"))
        await runtime.redis.ping()
        started = time.perf_counter()
        result = await sla.sweep(runtime, now=now)
        elapsed = time.perf_counter() - started
        return elapsed, result.breaches, scan
    finally:
        await runtime.close()


async def creation_cost(samples: int) -> tuple[float, float]:
    """Microseconds per case creation: the deadline arithmetic alone, and the whole clock start."""
    from sqlalchemy import select

    from app.models import Case, Region, TatTarget
    from app.runtime import create_runtime
    from app.services import sla
    from app.services.calendars import calendar_of
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=2)
    try:
        async with runtime.reading() as session:
            region = await session.scalar(select(Region))
            targets = list(await session.scalars(select(TatTarget).where(TatTarget.priority == "normal")))
            cases = list(await session.scalars(select(Case).order_by(Case.id).limit(samples)))
        calendar = calendar_of(region)
        start = datetime(2026, 3, 26, 15, 7, tzinfo=UTC)
        sla.deadlines(calendar, start, 0, targets)  # warm the holiday tables
        started = time.perf_counter()
        for i in range(samples):
            sla.deadlines(calendar, start + timedelta(minutes=7 * i), 0, targets)
        arithmetic = (time.perf_counter() - started) / samples * 1e6
        async with runtime.transaction() as session:
            await session.execute(sla.CaseSla.__table__.delete().where(sla.CaseSla.case_id.in_([c.id for c in cases])))
        started = time.perf_counter()
        async with runtime.transaction() as session:
            for case in cases:
                await sla.start_clock(session, case=case)
        whole = (time.perf_counter() - started) / samples * 1e6
        return arithmetic, whole
    finally:
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()

    with embedded_servers():
        started = time.monotonic()
        print(f"loading {args.cases} open cases with clocks")
        asyncio.run(prepare(args.cases))
        print(f"loaded in {time.monotonic() - started:.1f}s")
        small, small_due, small_scan = asyncio.run(sweep_at(1000))
        large, large_due, large_scan = asyncio.run(sweep_at(100))
        arithmetic_us, clock_us = asyncio.run(creation_cost(args.samples))

    ratio = large / small
    print(
        f"sweep, 0.1% due ({small_due} cases): {small * 1000:8.1f} ms   (scan without the index: {small_scan * 1000:.1f} ms)"
    )
    print(
        f"sweep, 1%   due ({large_due} cases): {large * 1000:8.1f} ms   (scan without the index: {large_scan * 1000:.1f} ms)"
    )
    print(f"sweep_ratio (1% / 0.1%): {ratio:.2f}   goal ≤ 15; 1% sweep goal ≤ 2000 ms")
    print(f"deadlines per case creation: {arithmetic_us:.1f} µs arithmetic, {clock_us:.1f} µs with the clock's queries")
    print(
        json.dumps(
            {
                "open_cases": args.cases,
                "due_small": small_due,
                "due_large": large_due,
                "sweep_small_ms": round(small * 1000, 1),
                "sweep_large_ms": round(large * 1000, 1),
                "sweep_ratio": round(ratio, 2),
                "scan_small_ms": round(small_scan * 1000, 1),
                "scan_large_ms": round(large_scan * 1000, 1),
                "deadline_us": round(arithmetic_us, 1),
                "clock_start_us": round(clock_us, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
