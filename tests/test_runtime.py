"""Health checks, the worker heartbeat, the CLI, the committed SDL and the embedded servers."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import redis

from app.embedded import EmbeddedServers
from jobs.worker import close_worker, create_worker

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


async def test_healthz_and_readyz_follow_the_worker_heartbeat(http):
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    before = await http.get("/readyz")
    assert before.status_code == 503 and before.json()["worker"] == "no recent heartbeat"

    worker = create_worker(handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        for _ in range(400):  # the worker's start-up is slow on a loaded machine
            ready = await http.get("/readyz")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close_worker(worker)

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok", "worker": "ok"}


async def test_token_create_prints_only_the_token_and_stores_it_hashed(servers, gql, runtime):
    result = await asyncio.to_thread(run_cli, "token", "create", "--name", "dialer", "--role", "integrator")

    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("cg_")
    assert (await gql("{ me { name role } }", token=token))["me"] == {"name": "dialer", "role": "INTEGRATOR"}
    async with runtime.engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT token_hash FROM api_tokens WHERE name = 'dialer'"))).scalar_one()
    assert token not in stored and len(stored) == 64


async def test_token_create_refuses_an_unknown_role(servers):
    result = await asyncio.to_thread(run_cli, "token", "create", "--name", "x", "--role", "king")
    assert result.returncode == 2 and result.stdout == ""


def test_committed_schema_matches_the_code():
    result = run_cli("export-schema")
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "schema" / "schema.graphql").read_text()
    assert result.stdout == committed, "schema/schema.graphql is stale: run `make schema`"


def test_embedded_servers_keep_their_data_across_a_restart(tmp_path):
    home = tmp_path / "home"

    def start() -> tuple[EmbeddedServers, dict]:
        servers = EmbeddedServers(home)
        return servers, servers.start(database=True, redis=True)

    first, urls = start()
    try:
        first.postgres.server.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here');")
        redis.Redis(unix_socket_path=urls["REDIS_URL"].removeprefix("unix://")).set("kept", "yes")
    finally:
        first.stop()

    second, urls = start()
    try:
        assert "still here" in second.postgres.server.psql("SELECT v FROM kept;")
        assert redis.Redis(unix_socket_path=urls["REDIS_URL"].removeprefix("unix://")).get("kept") == b"yes"
    finally:
        second.stop()


async def test_demo_data_set_has_the_promised_shape(runtime, gql):
    from sqlalchemy import text

    from app.demo import generate

    async with runtime.engine.begin() as conn:
        ids = await generate(conn, customers=50)
    async with runtime.engine.connect() as conn:
        counts = {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("customers", "cases", "contacts", "customer_identifiers")
        }
    first = await gql(
        "{ customers(first: 1) { edges { node { number identifiers { kind } contacts(first: 1) { totalCount } } } } }"
    )

    assert len(ids) == counts["customers"] == 50
    assert 100 <= counts["cases"] <= 200 and 700 <= counts["contacts"] <= 1300  # about 3 and 20 per customer
    node = first["customers"]["edges"][0]["node"]
    assert node["number"].startswith("C-") and {"EMAIL", "PHONE"} <= {i["kind"] for i in node["identifiers"]}
    assert node["contacts"]["totalCount"] > 0


def test_serve_starts_everything_on_the_embedded_default_and_stops_cleanly(tmp_path):
    import signal
    import time

    import httpx
    import psutil

    from tests.conftest import _free_port

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CASEGRAPH_HOME"] = str(tmp_path / "home")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.json()["status"] == "ready", (
            process.stderr.read() if process.poll() else ready
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)

    log = process.stderr.read()
    assert process.returncode == 0, log
    assert "casegraph token create" in log
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


async def test_worker_beats_and_stops_cleanly_on_sigterm(servers, runtime):
    import signal

    from app.health import HEARTBEAT_KEY

    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env={**os.environ, **servers},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(150):
            if await runtime.redis.get(HEARTBEAT_KEY):
                break
            await asyncio.sleep(0.1)
        assert await runtime.redis.get(HEARTBEAT_KEY), "no heartbeat from the worker"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
    assert process.returncode == 0, process.stderr.read()


async def test_stopping_the_worker_lets_a_job_under_way_finish(servers):
    worker = create_worker(handle_signals=False)
    finished = []

    async def job_recording_its_result():
        await asyncio.sleep(0.3)
        finished.append(True)

    worker.tasks["under-way"] = asyncio.create_task(job_recording_its_result())
    await close_worker(worker)
    assert finished == [True]


async def test_a_job_past_the_grace_period_is_cancelled_and_the_stop_stays_clean(servers):
    worker = create_worker(handle_signals=False)
    stuck = asyncio.create_task(asyncio.sleep(60))
    worker.tasks["stuck"] = stuck
    await close_worker(worker, grace_s=0.1)
    assert stuck.cancelled()
