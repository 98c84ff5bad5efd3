"""Benchmark: claiming work and pushing queue changes to agents.

1. Claims. 200 agents serve 10 pools holding 20,000 waiting cases (each agent with priorities of
   their own for the pools). Every agent calls `caseNext` over GraphQL on its own keep-alive
   connection, as fast as answered, for `--seconds`; then the same claim statement, driven
   directly through asyncpg by the same 200 agents, takes the rest of the queue: that is the
   floor. `double_claims` counts cases handed out twice, `skipped` the cases still waiting once
   every agent was told nothing waits (both must be 0).
2. Fan-out. 1,000 WebSocket subscribers spread over 2 API processes and the 10 pools (an agent
   watches a pool they serve) receive `queueUpdated`; cases enter the pools at 50 a second.
   Latency runs from just before the commit to the subscriber's receipt; `missed` counts the
   updates a subscriber never got.

Prints each figure; the last line is one JSON object.

    python bench/queues.py [--agents 200] [--pools 10] [--cases 20000] [--seconds 10]
                          [--subscribers 1000] [--rate 50] [--events 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import defaultdict

import orjson
from _common import ROOT, embedded_servers, free_port, http_request, server_process

NEXT = b'{"query":"mutation { caseNext { case { id } errors { code } } }"}'
QUEUE_UPDATED = "subscription($p: ID!) { queueUpdated(poolId: $p) { change caseId counts { waiting } } }"


async def prepare(agents: int, pools: int, cases: int) -> tuple[list[str], list[int], list[int], list[list[list[int]]]]:
    """Agents (tokens and ids), pools, memberships with random priorities, waiting cases."""
    from sqlalchemy import text

    from app.models import PoolMember
    from app.runtime import create_runtime
    from app.services.auth import create_token
    from app.services.queues import claim_order
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=2)
    rng = random.Random(7)
    try:
        async with runtime.transaction() as session:
            pool_ids = [
                (
                    await session.execute(
                        text("INSERT INTO pools (name, priority) VALUES (:n, :p) RETURNING id"),
                        {"n": f"Pool {i}", "p": i % 3},
                    )
                ).scalar()
                for i in range(pools)
            ]
            tokens = [await create_token(session, name=f"agent-{i}", role="agent") for i in range(agents)]
            user_ids = list((await session.execute(text("SELECT id FROM users ORDER BY id"))).scalars())
            members = [
                {"pool_id": pool_id, "user_id": user_id, "priority": rng.randint(0, 2)}
                for user_id in user_ids
                for pool_id in pool_ids
            ]
            await session.execute(PoolMember.__table__.insert(), members)
            await session.execute(
                text("""
                    INSERT INTO cases (subject, pool_id, waiting_since)
                    SELECT 'case ' || n, (CAST(:pools AS bigint[]))[1 + n % cardinality(CAST(:pools AS bigint[]))],
                           now() - make_interval(secs => CAST(:cases AS int) - n)
                    FROM generate_series(1, CAST(:cases AS int)) AS n
                """),
                {"pools": pool_ids, "cases": cases},
            )
        async with runtime.reading() as session:
            tiers = [(await claim_order(session, user_id))[1] for user_id in user_ids]
    finally:
        await runtime.close()
    return tokens, user_ids, pool_ids, tiers


async def _claim_over_graphql(port: int, token: str, stop_at: float, claimed: list[str], latencies: list[float]) -> int:
    """One agent claiming until nothing waits or time is up; returns the nulls received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = http_request(
        "POST", "/graphql", NEXT, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = orjson.loads(await reader.readexactly(length))
            if not status.startswith(b"HTTP/1.1 200") or body.get("errors") or body["data"]["caseNext"]["errors"]:
                raise RuntimeError(f"bad response: {status!r} {body}")
            latencies.append((time.perf_counter() - started) * 1000)
            case = body["data"]["caseNext"]["case"]
            if case is None:
                return 1
            claimed.append(case["id"])
    finally:
        writer.close()
    return 0


async def claims_over_graphql(port: int, tokens: list[str], seconds: float) -> tuple[float, list[str], list[float]]:
    claimed: list[str] = []
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(*[_claim_over_graphql(port, t, started + seconds, claimed, latencies) for t in tokens])
    return len(claimed) / (time.monotonic() - started), claimed, latencies


CLAIM = """
    WITH picked AS (
        SELECT id, status FROM cases
        WHERE pool_id = ANY($2::bigint[]) AND waiting_since IS NOT NULL
        ORDER BY due_at, waiting_since, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE cases SET assignee_id = $1, status = 'open', updated_at = now()
    FROM picked WHERE cases.id = picked.id
    RETURNING cases.id
"""


async def claims_floor(dsn: str, user_ids: list[int], tiers: list[list[list[int]]]) -> tuple[float, list[int]]:
    """The same claim statement over asyncpg, by the same agents, until nothing waits."""
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=20, max_size=20)
    claimed: list[int] = []

    async def agent(index: int) -> None:
        while True:
            async with pool.acquire() as conn:
                found = None
                for tier in tiers[index]:
                    found = await conn.fetchval(CLAIM, user_ids[index], tier)
                    if found is not None:
                        break
            if found is None:
                return
            claimed.append(found)

    started = time.monotonic()
    await asyncio.gather(*[agent(i) for i in range(len(user_ids))])
    elapsed = time.monotonic() - started
    await pool.close()
    return len(claimed) / elapsed, claimed


async def _subscriber(host: str, token: str, pool_gid: str, received: dict, listening: asyncio.Event) -> None:
    """One agent desktop watching a pool until cancelled (without per-message compression, as
    Node's `ws` and so the graphql-ws client connect by default)."""
    import websockets

    url = f"ws://{host}/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], max_queue=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        await ws.recv()
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": QUEUE_UPDATED, "variables": {"p": pool_gid}}}
        await ws.send(json.dumps(subscribe))
        async for message in ws:
            at = time.perf_counter()
            data = orjson.loads(message)
            if data["type"] != "next":
                raise RuntimeError(f"subscription failed: {data}")
            received[data["payload"]["data"]["queueUpdated"]["caseId"]].append(at)
            listening.set()  # a probe got through: this subscriber is listening


async def fanout(
    hosts: list[str], tokens: list[str], pool_ids: list[int], subscribers: int, rate: float, events: int
) -> dict:
    from app.auth import SYSTEM
    from app.runtime import create_runtime
    from app.services import cases, customers
    from app.settings import load_settings
    from schema.ids import to_global_id

    runtime = create_runtime(load_settings(), pool_size=2)
    received: dict[str, list[float]] = defaultdict(list)
    watchers: dict[int, int] = defaultdict(int)
    tasks, readies = [], []
    for index in range(subscribers):
        pool_id = pool_ids[index % len(pool_ids)]
        watchers[pool_id] += 1
        ready = asyncio.Event()
        readies.append(ready)
        host = hosts[index % len(hosts)]
        tasks.append(
            asyncio.create_task(
                _subscriber(host, tokens[index % len(tokens)], to_global_id("Pool", pool_id), received, ready)
            )
        )
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # connect in waves, as desktops start
    async with runtime.transaction() as session:
        customer = await customers.create_customer(
            session, actor=SYSTEM, name="Fan-out", identifiers=[], fields=None, region="GB"
        )
    committed: dict[str, tuple[float, int]] = {}

    async def enter(pool_id: int, label: str) -> str:
        async with runtime.transaction() as session:
            case = await cases.create_case(
                session, actor=SYSTEM, subject=label, customer_ids=[customer.id], pool_id=pool_id
            )
            case_gid = to_global_id("Case", case.id)
            committed[case_gid] = (time.perf_counter(), pool_id)
        return case_gid

    # Every subscriber must be listening before the measured events: probe every pool until each
    # subscriber received something (a subscription is registered a moment after its message).
    deadline = time.monotonic() + 120
    while not all(ready.is_set() for ready in readies):
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise RuntimeError(f"{len(failed)} subscribers failed") from failed[0].exception()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sum(not r.is_set() for r in readies)} subscribers never started listening")
        for pool_id in pool_ids:
            await enter(pool_id, "probe")
        await asyncio.sleep(2)

    interval = 1 / rate
    started = time.perf_counter()
    measured = []
    for n in range(events):
        await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
        measured.append(await enter(pool_ids[n % len(pool_ids)], f"event {n}"))
    await asyncio.sleep(3)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runtime.close()

    latencies, missed = [], 0
    for case_gid in measured:
        sent, pool_id = committed[case_gid]
        arrivals = received.get(case_gid, [])
        missed += watchers[pool_id] - len(arrivals)
        latencies.extend((at - sent) * 1000 for at in arrivals)
    latencies.sort()
    return {
        "deliveries": len(latencies),
        "fanout_p50_ms": round(latencies[len(latencies) // 2], 1),
        "fanout_p99_ms": round(latencies[int(len(latencies) * 0.99)], 1),
        "missed": missed,
    }


async def count_left(dsn: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        waiting = await conn.fetchval("SELECT count(*) FROM cases WHERE waiting_since IS NOT NULL")
        unassigned = await conn.fetchval("SELECT count(*) FROM cases WHERE assignee_id IS NULL")
    finally:
        await conn.close()
    return waiting, unassigned


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()

    with embedded_servers() as urls:
        dsn = urls["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
        tokens, user_ids, pool_ids, tiers = asyncio.run(prepare(args.agents, args.pools, args.cases))
        ports = [free_port(), free_port()]
        api = [sys.executable, "-m", "app.cli", "api", "--port"]
        with (
            server_process([*api, str(ports[0])], ports[0], urls),
            server_process([*api, str(ports[1])], ports[1], urls),
        ):
            graphql_rate, claimed, latencies = asyncio.run(claims_over_graphql(ports[0], tokens, args.seconds))
            floor_rate, floor_claimed = asyncio.run(claims_floor(dsn, user_ids, tiers))
            waiting, unassigned = asyncio.run(count_left(dsn))
            from schema.ids import to_global_id

            everything = claimed + [to_global_id("Case", i) for i in floor_claimed]
            double = len(everything) - len(set(everything))
            print(
                f"claims: graphql {graphql_rate:.0f}/s ({len(claimed)} claims), floor {floor_rate:.0f}/s "
                f"({len(floor_claimed)}); ratio {graphql_rate / floor_rate:.2f}"
            )
            latencies.sort()
            print(
                f"  caseNext p50 {latencies[len(latencies) // 2]:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms"
            )
            print(f"  double claims {double}, still waiting {waiting}, never assigned {unassigned}")
            spread = asyncio.run(
                fanout([f"127.0.0.1:{p}" for p in ports], tokens, pool_ids, args.subscribers, args.rate, args.events)
            )
            print(
                f"fan-out: {args.subscribers} subscribers on 2 processes, {args.rate:.0f} events/s: "
                f"p50 {spread['fanout_p50_ms']} ms, p99 {spread['fanout_p99_ms']} ms, "
                f"{spread['deliveries']} deliveries, missed {spread['missed']}"
            )
    print(
        json.dumps(
            {
                "claims_per_s": round(graphql_rate, 1),
                "floor_claims_per_s": round(floor_rate, 1),
                "claim_ratio": round(graphql_rate / floor_rate, 3),
                "double_claims": double,
                "skipped": waiting,
                **spread,
            }
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
