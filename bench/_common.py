"""Shared benchmark plumbing: embedded servers, a keep-alive HTTP load generator, percentiles."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextmanager
def embedded_servers():
    """Fresh embedded PostgreSQL and Redis in a temporary home, migrated; yields their URLs."""
    from app.embedded import EmbeddedServers
    from app.migrate import upgrade

    home = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    servers = EmbeddedServers(home)
    try:
        urls = servers.start(database=True, redis=True)
        os.environ.update(urls)
        upgrade(urls["DATABASE_URL"])
        yield urls
    finally:
        servers.stop()
        shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(args: list[str], port: int, env: dict[str, str]):
    process = subprocess.Popen(
        args, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError(process.stderr.read().decode() if process.poll() is not None else "server did not start")
        yield
    finally:
        process.terminate()
        process.wait(15)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[int(p) - 1]


async def _one_connection(port: int, make_request: Callable[[], bytes], stop_at: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            writer.write(make_request())
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200") or b'"errors"' in body:
                raise RuntimeError(f"bad response: {status!r} {body[:300]!r}")
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()


async def run_load(port: int, make_request: Callable[[], bytes], *, concurrency: int, seconds: float) -> LoadResult:
    """Closed-loop load: `concurrency` keep-alive connections, each sending as fast as answered."""
    warmup: list[float] = []
    await asyncio.gather(
        *[_one_connection(port, make_request, time.monotonic() + 1.0, warmup) for _ in range(concurrency)]
    )
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(
        *[_one_connection(port, make_request, started + seconds, latencies) for _ in range(concurrency)]
    )
    return LoadResult(requests=len(latencies), seconds=time.monotonic() - started, latencies_ms=latencies)


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def pick(ids: list[int]) -> int:
    return random.choice(ids)
