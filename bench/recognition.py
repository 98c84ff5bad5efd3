"""Benchmark: recognition and ingest at 10,000 and at 1,000,000 customers.

Loads customers with 3 identifiers each (email, phone, account id) by COPY, plus cases, then
ingests a mix of contacts (known email, known phone, case reference in the subject, unknown
sender) through the same service the contactIngest mutation calls, each in its own transaction,
from `--processes` client processes (as N API processes would) with `--concurrency` in flight
each. Grows the same database to the large size and repeats.
Latency (p50/p99 of recognition and of the whole ingest) is measured one ingest at a time, so
it shows the cost of the lookups rather than queueing for a busy CPU; ingests/s with every
client busy; and ingests/s through contactIngestBatch's service in batches of `--batch-size`
(goal: 2,000/s with 500). Each figure is the median of `--rounds` rounds. Prints both at each size and the p99 ratio large/small; the last line is one JSON
object.

    python bench/recognition.py [--small 10000] [--large 1000000] [--ingests 4000] [--processes 2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import statistics
import time

from _common import embedded_servers

CASES_PER_THOUSAND = 50
# Rows created by ingests (unknown senders) take ids from here, clear of the loaded ranges.
CREATED_IDS_FROM = 20_000_000
# ...and numbers / references from here: the loaded ones have 7 digits (C-0000001) or stay below
# (CASE-000001..), and the server-side default pads to 6 digits.
CREATED_NUMBERS_FROM = 900_000
_external_ids = itertools.count(1)


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def phone(i: int) -> str:
    return f"+447{700000000 + i}"


async def load_customers(runtime, start: int, stop: int) -> None:
    """Customers start..stop-1 (ids = numbers) with their identifiers, and some cases, by COPY."""
    async with runtime.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        chunk = 100_000
        for low in range(start, stop, chunk):
            high = min(stop, low + chunk)
            await raw.copy_records_to_table(
                "customers",
                columns=["id", "number", "name"],
                records=[(i, f"C-{i:07d}", f"Customer {i}") for i in range(low, high)],
            )
            await raw.copy_records_to_table(
                "customer_identifiers",
                columns=["customer_id", "kind", "value"],
                records=[
                    row
                    for i in range(low, high)
                    for row in (
                        (i, "email", f"c{i}@bench.test"),
                        (i, "phone", phone(i)),
                        (i, "account_id", f"ACC-{i:07d}"),
                    )
                ],
            )
        first_case = await raw.fetchval(f"SELECT coalesce(max(id), 0) + 1 FROM cases WHERE id < {CREATED_IDS_FROM}")
        cases = [
            (first_case + n, f"CASE-{first_case + n:06d}", "Bench case")
            for n in range((stop - start) * CASES_PER_THOUSAND // 1000)
        ]
        await raw.copy_records_to_table("cases", columns=["id", "reference", "subject"], records=cases)
        await raw.copy_records_to_table(
            "case_customers",
            columns=["case_id", "customer_id", "is_primary"],
            records=[(case_id, random.randrange(start, stop), True) for case_id, _, _ in cases],
        )
        for sequence, floor in (
            ("customers_id_seq", CREATED_IDS_FROM),
            ("cases_id_seq", CREATED_IDS_FROM),
            ("customer_number_seq", CREATED_NUMBERS_FROM),
            ("case_reference_seq", CREATED_NUMBERS_FROM),
        ):
            await raw.execute(f"SELECT setval('{sequence}', greatest({floor}, (SELECT last_value FROM {sequence})))")
        await conn.commit()
        # Vacuumed and analysed now, so autovacuum does not wake up on these tables mid-measurement.
        await raw.execute("VACUUM (ANALYZE) customers, customer_identifiers, cases, case_customers, contacts")


async def case_references(runtime) -> list[str]:
    async with runtime.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        return [r[0] for r in await raw.fetch("SELECT reference FROM cases ORDER BY random() LIMIT 5000")]


def contact(customers: int, references: list[str]):
    from app.contact_data import ContactData

    kind = random.random()
    customer = random.randrange(1, customers + 1)
    # Client processes are forked from one parent: the pid keeps their ids apart.
    common = dict(direction="inbound", source="bench", external_id=f"b-{os.getpid()}-{next(_external_ids)}")
    if kind < 0.3:
        return ContactData(
            channel="email",
            from_address=f"Customer <c{customer}@bench.test>",
            subject="Question",
            text="Hello",
            **common,
        )
    if kind < 0.6:
        return ContactData(channel="phone", from_address=phone(customer), **common)
    if kind < 0.8:
        return ContactData(
            channel="email",
            from_address=f"c{customer}@bench.test",
            subject=f"Re: [{random.choice(references)}] update",
            **common,
        )
    return ContactData(
        channel="email",
        from_address=f"new{os.getpid()}-{next(_external_ids)}@unknown.test",
        subject="First contact",
        **common,
    )


async def ingest_batch(*, customers: int, count: int, concurrency: int, references: list[str], seed: int) -> dict:
    """One process's share: `count` ingests, `concurrency` in flight; its latencies and wall-clock span."""
    from app.auth import Actor
    from app.runtime import create_runtime
    from app.services.contacts import ingest_contact
    from app.settings import load_settings

    random.seed(seed)
    runtime = create_runtime(load_settings(), pool_size=concurrency + 1)
    actor = Actor(user_id=None, name="bench", role="integrator")
    region = runtime.settings.default_phone_region
    queue = [contact(customers, references) for _ in range(count)]
    ingest_ms: list[float] = []
    recognition_ms: list[float] = []

    async def worker() -> None:
        while queue:
            data = queue.pop()
            started = time.perf_counter()
            async with runtime.transaction() as session:
                result = await ingest_contact(session, actor=actor, data=data, region=region)
            ingest_ms.append((time.perf_counter() - started) * 1000)
            if "elapsedMs" not in result.contact.recognition:
                raise RuntimeError(f"recognition failed: {result.contact.recognition}")
            recognition_ms.append(result.contact.recognition["elapsedMs"])

    # Long-lived objects out of the collector's way: a full collection in the middle of the run
    # would show up as a p99 spike that has nothing to do with the database's size.
    gc.collect()
    gc.freeze()
    try:
        started = time.time()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        ended = time.time()
    finally:
        await runtime.close()
    return {"ingest_ms": ingest_ms, "recognition_ms": recognition_ms, "started": started, "ended": ended}


def _batch_in_process(kwargs: dict) -> dict:
    return asyncio.run(ingest_batch(**kwargs))


async def ingest_in_batches(*, customers: int, count: int, size: int, references: list[str], seed: int) -> dict:
    """One process's share through contactIngestBatch's service: `count` contacts, `size` a call."""
    from app.auth import Actor
    from app.runtime import create_runtime
    from app.services.contacts import ingest_contacts
    from app.settings import load_settings

    random.seed(seed)
    runtime = create_runtime(load_settings(), pool_size=2)
    actor = Actor(user_id=None, name="bench", role="integrator")
    region = runtime.settings.default_phone_region
    items = [contact(customers, references) for _ in range(count)]
    gc.collect()
    gc.freeze()
    try:
        started = time.time()
        for low in range(0, count, size):
            for result in await ingest_contacts(runtime, actor=actor, items=items[low : low + size], region=region):
                if "elapsedMs" not in result.contact.recognition:
                    raise RuntimeError(f"recognition failed: {result.contact.recognition}")
        ended = time.time()
    finally:
        await runtime.close()
    return {"count": count, "started": started, "ended": ended}


def _batches_in_process(kwargs: dict) -> dict:
    return asyncio.run(ingest_in_batches(**kwargs))


def run_batches(*, customers: int, count: int, size: int, processes: int, references: list[str]) -> float:
    """Batched ingests per second, `processes` client processes each sending batches of `size`."""
    from concurrent.futures import ProcessPoolExecutor

    shares = [
        {
            "customers": customers,
            "count": count // processes,
            "size": size,
            "references": references,
            "seed": random.randrange(1 << 30),
        }
        for _ in range(processes)
    ]
    with ProcessPoolExecutor(processes) as pool:
        done = list(pool.map(_batches_in_process, shares))
    return sum(d["count"] for d in done) / (max(d["ended"] for d in done) - min(d["started"] for d in done))


def run_ingests(
    *, customers: int, count: int, concurrency: int, processes: int, references: list[str]
) -> dict[str, float]:
    """`processes` client processes (like N API processes) share the ingests; figures over all."""
    from concurrent.futures import ProcessPoolExecutor

    shares = [
        {
            "customers": customers,
            "count": count // processes,
            "concurrency": concurrency,
            "references": references,
            "seed": random.randrange(1 << 30),
        }
        for _ in range(processes)
    ]
    with ProcessPoolExecutor(processes) as pool:
        batches = list(pool.map(_batch_in_process, shares))
    ingest_ms = [v for b in batches for v in b["ingest_ms"]]
    recognition_ms = [v for b in batches for v in b["recognition_ms"]]
    seconds = max(b["ended"] for b in batches) - min(b["started"] for b in batches)
    return {
        "ingests_per_s": len(ingest_ms) / seconds,
        "recognition_p50_ms": percentile(recognition_ms, 50),
        "recognition_p99_ms": percentile(recognition_ms, 99),
        "ingest_p50_ms": percentile(ingest_ms, 50),
        "ingest_p99_ms": percentile(ingest_ms, 99),
    }


def report(size: int, figures: dict[str, float]) -> None:
    print(
        f"{size:>9,} customers: {figures['ingests_per_s']:7.0f} ingests/s   "
        f"recognition p50 {figures['recognition_p50_ms']:6.2f} ms  p99 {figures['recognition_p99_ms']:6.2f} ms   "
        f"ingest p50 {figures['ingest_p50_ms']:6.2f} ms  p99 {figures['ingest_p99_ms']:6.2f} ms   "
        f"(p99 {figures['loaded_ingest_p99_ms']:.1f} ms at full load)\n"
        f"{'':>21}rounds: recognition p99 {figures['p99_rounds']} ms, ingests/s {figures['ingests_per_s_rounds']}\n"
        f"{'':>21}batched: {figures['batch_ingests_per_s']:7.0f} ingests/s in batches "
        f"(rounds {figures['batch_ingests_per_s_rounds']}; ratio to one by one "
        f"{figures['batch_ingests_per_s'] / figures['ingests_per_s']:.1f})",
        flush=True,
    )


async def load(size_from: int, size_to: int) -> list[str]:
    from app.runtime import create_runtime
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=1)
    try:
        started = time.perf_counter()
        await load_customers(runtime, size_from + 1, size_to + 1)
        print(
            f"loaded {size_to:,} customers ({size_to * 3:,} identifiers) in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        return await case_references(runtime)
    finally:
        await runtime.close()


def bench(args) -> dict[str, float]:
    results = {}
    loaded = 0
    for size in (args.small, args.large):
        references = asyncio.run(load(loaded, size))
        loaded = size
        # Latency without contention (one ingest at a time), then throughput with every core busy.
        latency = {"customers": size, "concurrency": 1, "processes": 1, "references": references}
        throughput = {
            "customers": size,
            "concurrency": args.concurrency,
            "processes": args.processes,
            "references": references,
        }
        # Several rounds, reporting each figure's median: one burst of unrelated load on the
        # machine must not decide a p99.
        run_ingests(count=args.warmup, **throughput)
        rounds = [run_ingests(count=args.latency_ingests, **latency) for _ in range(args.rounds)]
        loaded_rounds = [run_ingests(count=args.ingests, **throughput) for _ in range(args.rounds)]
        figures = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        figures["ingests_per_s"] = statistics.median(r["ingests_per_s"] for r in loaded_rounds)
        figures["loaded_ingest_p99_ms"] = statistics.median(r["ingest_p99_ms"] for r in loaded_rounds)
        figures["p99_rounds"] = [round(r["recognition_p99_ms"], 2) for r in rounds]
        figures["ingests_per_s_rounds"] = [round(r["ingests_per_s"]) for r in loaded_rounds]
        batched = {**throughput, "size": args.batch_size}
        batched.pop("concurrency")
        batch_rounds = [run_batches(count=args.batch_ingests, **batched) for _ in range(args.rounds)]
        figures["batch_ingests_per_s"] = statistics.median(batch_rounds)
        figures["batch_ingests_per_s_rounds"] = [round(r) for r in batch_rounds]
        results[size] = figures
        report(size, figures)
    small, large = results[args.small], results[args.large]
    return {
        "processes": args.processes,
        "concurrency_per_process": args.concurrency,
        "customers_small": args.small,
        "customers_large": args.large,
        "ingests_per_s": round(min(small["ingests_per_s"], large["ingests_per_s"]), 1),
        "ingests_per_s_small": round(small["ingests_per_s"], 1),
        "ingests_per_s_large": round(large["ingests_per_s"], 1),
        "batch_size": args.batch_size,
        "batch_ingests_per_s": round(min(small["batch_ingests_per_s"], large["batch_ingests_per_s"]), 1),
        "batch_ingests_per_s_small": round(small["batch_ingests_per_s"], 1),
        "batch_ingests_per_s_large": round(large["batch_ingests_per_s"], 1),
        "batch_ratio": round(
            min(small["batch_ingests_per_s"], large["batch_ingests_per_s"])
            / min(small["ingests_per_s"], large["ingests_per_s"]),
            2,
        ),
        "p99_ms_small": round(small["recognition_p99_ms"], 3),
        "p99_ms_large": round(large["recognition_p99_ms"], 3),
        "p99_ratio": round(large["recognition_p99_ms"] / small["recognition_p99_ms"], 3),
        "ingest_p99_ms_small": round(small["ingest_p99_ms"], 3),
        "ingest_p99_ms_large": round(large["ingest_p99_ms"], 3),
        "ingest_p99_ratio": round(large["ingest_p99_ms"] / small["ingest_p99_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000, help="the large size (replaces 1,000,000)")
    parser.add_argument("--ingests", type=int, default=3000, help="ingests per throughput round at each size")
    parser.add_argument("--latency-ingests", type=int, default=2000, help="one-at-a-time ingests per latency round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure; the median is reported")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4, help="ingests in flight per process")
    parser.add_argument("--processes", type=int, default=2, help="client processes, as N API processes would be")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=500, help="contacts per contactIngestBatch call")
    parser.add_argument("--batch-ingests", type=int, default=10_000, help="batched ingests per round at each size")
    args = parser.parse_args()
    random.seed(args.seed)
    with embedded_servers():
        summary = bench(args)
    print(
        f"p99 recognition ratio {args.large:,}/{args.small:,}: {summary['p99_ratio']:.2f}   "
        f"p99 ingest ratio: {summary['ingest_p99_ratio']:.2f}   ingests/s (lower of the two): {summary['ingests_per_s']:.0f}   "
        f"batched: {summary['batch_ingests_per_s']:.0f} (x{summary['batch_ratio']})"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
