"""Connections for read statements answered as one value (the compiled read path's statements).

asyncpg directly, without SQLAlchemy's session, pool events and transaction: each statement is
prepared once per connection (asyncpg's statement cache), runs in autocommit, and its connection
goes back without a reset round trip, since nothing session-level is ever changed on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg


class ReadFailed(Exception):
    """The statement did not answer (the database refused it or could not be reached)."""


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Statements here change no session state: there is nothing to reset."""


class ReadPool:
    def __init__(self, database_url: str, *, size: int) -> None:
        # postgresql+asyncpg://user@/db?host=/socket -> postgresql://user@/db?host=/socket
        self.dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.size = size
        self.listeners: list[Callable[[str], None]] = []  # told of each statement (query-count tests)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.size, reset=_no_reset)
        return self._pool

    async def fetch(self, sql: str, parameters: list[Any]) -> bytes:
        """The statement's one value, a text, as UTF-8 bytes."""
        pool = self._pool or await self._open()
        for listener in self.listeners:
            listener(sql)
        try:
            async with pool.acquire() as connection:
                value = await connection.fetchval(sql, *parameters)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            raise ReadFailed(type(error).__name__) from error
        return value.encode()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
