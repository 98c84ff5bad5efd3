"""Benchmark: a customer's contact history over GraphQL against a raw asyncpg + Starlette floor.

Generates customers with 50 contacts each over 10 cases, starts `casegraph api` and the floor app
under uvicorn, and drives both with the same closed-loop load: GraphQL twice, on the default
(compiled) path and on the executor (`Casegraph-Path: executor`). Prints req/s, p50 and p99 of
each and the ratios to the floor; the last line is one JSON object (`rps_ratio` is the default
path's, `executor_rps_ratio` the executor's).

Then a 3-level query, a page of 20 customers each with 10 cases each with 5 contacts (1,000
contacts a response), on both paths: `nested_*` figures, `nested_rps_ratio` compiled/executor.

    python bench/history.py [--customers 10000] [--concurrency 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable

from _common import ROOT, embedded_servers, free_port, http_request, run_load, server_process

QUERY = """query($id: ID!) { customer(id: $id) { contacts(first: 50) {
  edges { node { channel subject occurredAt case { reference } } } } } }"""
NESTED = """query($after: String) { customers(first: 20, after: $after) { edges { node { number name
  cases(first: 10) { edges { node { reference subject status
    contacts(first: 5) { edges { node { channel subject occurredAt } } } } } } } } } }"""
CASES_PER_CUSTOMER = 10


async def prepare(customers: int) -> tuple[list[int], str]:
    from app.demo import generate
    from app.runtime import create_runtime
    from app.services.auth import create_token
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=1)
    try:
        async with runtime.engine.begin() as conn:
            ids = await generate(
                conn,
                customers=customers,
                cases_per_customer=CASES_PER_CUSTOMER,
                contacts_per_customer=50,
                fixed_shape=True,
            )
        async with runtime.transaction() as session:
            token = await create_token(session, name="bench", role="agent")
    finally:
        await runtime.close()
    return ids, token


def check_path(port: int, token: str, customer_gid: str, after: str, path: str) -> None:
    """The path asked for is the one that answers, with the history (and the 3 levels) in it."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} | ({"Casegraph-Path": "executor"} if path == "executor" else {})
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": QUERY, "variables": {"id": customer_gid}},
        headers=headers,
    )
    assert response.headers["casegraph-path"] == path, response.headers
    assert len(response.json()["data"]["customer"]["contacts"]["edges"]) == 50, response.text
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": NESTED, "variables": {"after": after}}, headers=headers
    )
    assert response.headers["casegraph-path"] == path, response.headers
    customers = response.json()["data"]["customers"]["edges"]
    assert len(customers) == 20, response.text
    for customer in customers:
        cases = customer["node"]["cases"]["edges"]
        assert len(cases) == CASES_PER_CUSTOMER and all(len(c["node"]["contacts"]["edges"]) == 5 for c in cases)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for both servers")
    args = parser.parse_args()

    with embedded_servers() as urls:
        started = time.monotonic()
        ids, token = asyncio.run(prepare(args.customers))
        print(f"loaded {args.customers} customers, {args.customers * 50} contacts in {time.monotonic() - started:.1f}s")
        from app.pagination import encode_cursor
        from schema.ids import to_global_id

        def graphql_request(path: str) -> Callable[[], bytes]:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            if path == "executor":
                headers["Casegraph-Path"] = "executor"

            def request() -> bytes:
                body = json.dumps(
                    {"query": QUERY, "variables": {"id": to_global_id("Customer", random.choice(ids))}}
                ).encode()
                return http_request("POST", "/graphql", body, headers)

            return request

        def nested_request(path: str) -> Callable[[], bytes]:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            if path == "executor":
                headers["Casegraph-Path"] = "executor"

            def request() -> bytes:
                # A page that starts anywhere but within the last 20 customers: every page is full.
                after = encode_cursor(random.choice(ascending[20:]))
                body = json.dumps({"query": NESTED, "variables": {"after": after}}).encode()
                return http_request("POST", "/graphql", body, headers)

            return request

        def floor_request() -> bytes:
            return http_request("GET", f"/history/{random.choice(ids)}")

        results = {}
        nested = {}
        ascending = sorted(ids)
        port = free_port()
        api = [
            sys.executable,
            "-m",
            "app.cli",
            "api",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
        ]
        with server_process(api, port, urls):
            first_page_end = encode_cursor(ascending[-1])
            for path in ("compiled", "executor"):
                check_path(port, token, to_global_id("Customer", ids[0]), first_page_end, path)
                results[path] = asyncio.run(
                    run_load(port, graphql_request(path), concurrency=args.concurrency, seconds=args.seconds)
                )
            for path in ("compiled", "executor"):
                nested[path] = asyncio.run(
                    run_load(port, nested_request(path), concurrency=args.concurrency, seconds=args.seconds)
                )
        port = free_port()
        floor = [
            sys.executable,
            "-m",
            "uvicorn",
            "floor_app:app",
            "--app-dir",
            str(ROOT / "bench"),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(args.workers),
        ]
        with server_process(floor, port, urls):
            results["floor"] = asyncio.run(
                run_load(port, floor_request, concurrency=args.concurrency, seconds=args.seconds)
            )

    g, e, f = results["compiled"], results["executor"], results["floor"]
    print(f"{'':8} {'req/s':>10} {'p50 ms':>10} {'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:8} {r.rps:10.1f} {r.percentile(50):10.2f} {r.percentile(99):10.2f}")
    summary = {
        "customers": args.customers,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "graphql_rps": round(g.rps, 1),
        "executor_rps": round(e.rps, 1),
        "floor_rps": round(f.rps, 1),
        "rps_ratio": round(g.rps / f.rps, 3),
        "executor_rps_ratio": round(e.rps / f.rps, 3),
        "graphql_p50_ms": round(g.percentile(50), 2),
        "executor_p50_ms": round(e.percentile(50), 2),
        "floor_p50_ms": round(f.percentile(50), 2),
        "graphql_p99_ms": round(g.percentile(99), 2),
        "executor_p99_ms": round(e.percentile(99), 2),
        "floor_p99_ms": round(f.percentile(99), 2),
        "p50_ratio": round(g.percentile(50) / f.percentile(50), 2),
        "p99_ratio": round(g.percentile(99) / f.percentile(99), 2),
        "nested_rps": round(nested["compiled"].rps, 1),
        "nested_executor_rps": round(nested["executor"].rps, 1),
        "nested_rps_ratio": round(nested["compiled"].rps / nested["executor"].rps, 2),
        "nested_p50_ms": round(nested["compiled"].percentile(50), 2),
        "nested_executor_p50_ms": round(nested["executor"].percentile(50), 2),
        "nested_p99_ms": round(nested["compiled"].percentile(99), 2),
        "nested_executor_p99_ms": round(nested["executor"].percentile(99), 2),
    }
    print("3 levels (20 customers x 10 cases x 5 contacts):")
    for name, r in nested.items():
        print(f"{name:8} {r.rps:10.1f} {r.percentile(50):10.2f} {r.percentile(99):10.2f}")
    print(
        f"GraphQL throughput is {summary['rps_ratio']:.0%} of the floor's compiled (goal: at least 60%),"
        f" {summary['executor_rps_ratio']:.0%} on the executor;"
        f" 3 levels compiled is {summary['nested_rps_ratio']:.1f}x the executor"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
