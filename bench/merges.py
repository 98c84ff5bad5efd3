"""Benchmark: customer merge and undo at 1k / 10k / 100k contacts; the archive sweep at 0.1% and 1% eligible.

A duplicate holding N contacts (and N/10 cases, a tenth of them shared with the survivor, plus
identifiers half shared) is merged into a survivor and the merge undone, on top of a customers
table of --customers rows loaded with COPY. The sweep then runs an archive rule that finds 0.1%
of those customers inactive, and another that finds 1%. Prints times and the ratios that show
how cost grows; the last line is one JSON object.

    python bench/merges.py [--customers 1000000] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta

from _common import embedded_servers  # noqa: F401  (puts the project root on sys.path)

NOW = datetime.now(UTC)
COPY_CHUNK = 100_000


async def load_customers(conn, count: int, eligible: dict[int, int]) -> None:
    """COPY `count` active customers; `eligible` maps an inactivity age in days to how many get it.

    Numbers are given explicitly: the default 'C-' || lpad(seq, 6) repeats itself past 999,999.
    """
    ages = [age for age, n in eligible.items() for _ in range(n)]
    ages += [random.randint(0, 60) for _ in range(count - len(ages))]
    random.shuffle(ages)
    for start in range(0, count, COPY_CHUNK):
        rows = [
            (
                f"B-{start + i:08d}",
                f"Customer {start + i} {random.choice('ABCDEFGH')}",
                "{}" if i % 50 else '{"vip": true}',
                NOW - timedelta(days=ages[start + i]),
                NOW - timedelta(days=ages[start + i] + 30),
            )
            for i in range(min(COPY_CHUNK, count - start))
        ]
        await conn.copy_records_to_table(
            "customers", records=rows, columns=["number", "name", "fields", "last_activity_at", "created_at"]
        )


async def make_duplicate_pair(conn, contacts: int) -> tuple[int, int]:
    """A survivor and a duplicate holding `contacts` contacts over contacts/10 cases (a tenth shared)."""
    survivor, duplicate = [
        r["id"]
        for r in await conn.fetch(
            "INSERT INTO customers (name) VALUES ('Bench Survivor'), ('Bench Duplicate') RETURNING id"
        )
    ]
    cases = contacts // 10
    case_ids = [
        r["id"]
        for r in await conn.fetch(
            "INSERT INTO cases (subject) SELECT 'bench case ' || g FROM generate_series(1, $1) g RETURNING id", cases
        )
    ]
    # Bulk load only: skip the per-row tombstone triggers (and FK checks) while filling.
    await conn.execute("SET session_replication_role = replica")
    await conn.copy_records_to_table(
        "case_customers",
        records=[(c, duplicate, True) for c in case_ids],
        columns=["case_id", "customer_id", "is_primary"],
    )
    await conn.copy_records_to_table(
        "case_customers",
        records=[(c, survivor, False) for c in case_ids[::10]],
        columns=["case_id", "customer_id", "is_primary"],
    )
    await conn.copy_records_to_table(
        "contacts",
        records=[
            ("email", "inbound", NOW - timedelta(minutes=i), duplicate, case_ids[i % cases], f"message {i}")
            for i in range(contacts)
        ],
        columns=["channel", "direction", "occurred_at", "customer_id", "case_id", "text"],
    )
    await conn.execute("SET session_replication_role = DEFAULT")
    identifiers = [(duplicate, "email", f"dup{i}@example.com") for i in range(10)]
    identifiers += [(survivor, "email", f"dup{i}@example.com") for i in range(5)]
    await conn.copy_records_to_table(
        "customer_identifiers", records=identifiers, columns=["customer_id", "kind", "value"]
    )
    await conn.execute("ANALYZE customers; ANALYZE contacts; ANALYZE case_customers; ANALYZE cases")
    return survivor, duplicate


async def bench_merge(runtime, survivor: int, duplicate: int) -> tuple[float, float, dict]:
    from app.auth import SYSTEM
    from app.services.customers import merge_customers, undo_merge

    started = time.perf_counter()
    async with runtime.transaction() as session:
        merge = await merge_customers(session, actor=SYSTEM, survivor_id=survivor, duplicate_ids=[duplicate])
    merge_s = time.perf_counter() - started
    started = time.perf_counter()
    async with runtime.transaction() as session:
        await undo_merge(session, actor=SYSTEM, merge_id=merge.id)
    undo_s = time.perf_counter() - started
    return merge_s, undo_s, merge.counts


async def bench_sweep(runtime, inactivity_days: int, name: str) -> tuple[float, int]:
    from app.auth import SYSTEM
    from app.services import archive

    async with runtime.transaction() as session:
        await session.execute(archive.ArchiveRule.__table__.update().values(enabled=False))
        await archive.create_archive_rule(
            session,
            actor=SYSTEM,
            name=name,
            entity="customer",
            inactivity_days=inactivity_days,
            exempt_when={"vip": True},
        )
    started = time.perf_counter()
    result = await archive.sweep(runtime, batch_size=1000)
    return time.perf_counter() - started, result.archived


async def run(args) -> dict:
    import asyncpg

    from app.runtime import create_runtime
    from app.settings import load_settings

    settings = load_settings()
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    eligible_small = max(1, args.customers // 1000)
    eligible_large = max(1, args.customers // 100)
    # The 0.1% are inactive 400 days, the 1% 200 days: a 300-day rule finds the first, a 150-day rule the second.
    await load_customers(conn, args.customers, {400: eligible_small, 200: eligible_large})
    await conn.execute("ANALYZE customers")
    print(f"loaded {args.customers:,} customers with COPY in {time.perf_counter() - started:.1f}s")

    runtime = create_runtime(settings, pool_size=2)
    figures: dict[str, float] = {}
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        # One small merge first, so one-time costs (connections, plans, caches) are not billed to the 1k figure.
        await bench_merge(runtime, *await make_duplicate_pair(conn, 100))
        for size in sizes:
            survivor, duplicate = await make_duplicate_pair(conn, size)
            merge_s, undo_s, counts = await bench_merge(runtime, survivor, duplicate)
            label = f"{size // 1000}k"
            figures[f"merge_{label}_s"] = round(merge_s, 4)
            figures[f"undo_{label}_s"] = round(undo_s, 4)
            print(
                f"merge {size:>7,} contacts ({counts.get('case_link', 0):,} case links, {counts.get('identifier', 0)} identifiers): "
                f"merge {merge_s * 1000:8.1f} ms, undo {undo_s * 1000:8.1f} ms, "
                f"{merge_s / size * 1e6:.1f} µs per contact moved"
            )
        small_s, small_n = await bench_sweep(runtime, 300, "bench 0.1%")
        large_s, large_n = await bench_sweep(runtime, 150, "bench 1%")
    finally:
        await runtime.close()
        await conn.close()

    exempt_small = eligible_small - small_n
    print(
        f"sweep over {args.customers:,} customers, 0.1% eligible: archived {small_n:,} ({exempt_small} VIP kept) in {small_s * 1000:.1f} ms"
    )
    print(f"sweep over {args.customers:,} customers, 1% eligible:   archived {large_n:,} in {large_s * 1000:.1f} ms")
    results = dict(figures)
    if "merge_1k_s" in figures and "merge_10k_s" in figures:
        results["merge_ratio_10k_1k"] = round(figures["merge_10k_s"] / figures["merge_1k_s"], 2)
        results["undo_ratio_10k_1k"] = round(figures["undo_10k_s"] / figures["undo_1k_s"], 2)
    if "merge_100k_s" in figures and "merge_10k_s" in figures:
        results["merge_ratio_100k_10k"] = round(figures["merge_100k_s"] / figures["merge_10k_s"], 2)
        results["undo_ratio_100k_10k"] = round(figures["undo_100k_s"] / figures["undo_10k_s"], 2)
    results.update(
        customers=args.customers,
        sweep_small_s=round(small_s, 4),
        sweep_small_archived=small_n,
        sweep_large_s=round(large_s, 4),
        sweep_large_archived=large_n,
        sweep_ratio=round(large_s / small_s, 2),
        sweep_rows_ratio=round(large_n / max(small_n, 1), 2),
    )
    print(
        "ratios: merge 10k/1k {merge_ratio_10k_1k} (rows x10), merge 100k/10k {merge_ratio_100k_10k} (rows x10), "
        "sweep 1%/0.1% {sweep_ratio} (rows x{sweep_rows_ratio})".format(
            **{"merge_ratio_10k_1k": None, "merge_ratio_100k_10k": None, **results}
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--sizes", default="1000,10000,100000", help="contacts held by the duplicate, one merge each")
    args = parser.parse_args()
    random.seed(4)
    with embedded_servers():
        results = asyncio.run(run(args))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
