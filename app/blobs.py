"""Content stored once by its SHA-256. In PostgreSQL by default; another store (a bucket, a disk)
implements the same two methods."""

from __future__ import annotations

import hashlib
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Blob


class BlobStore(Protocol):
    async def put(self, session: AsyncSession, data: bytes) -> str: ...

    async def get(self, session: AsyncSession, sha256: str) -> bytes | None: ...


class PostgresBlobStore:
    async def put(self, session: AsyncSession, data: bytes) -> str:
        """Store `data` (once, whoever stored it before) in the session's transaction; its hash."""
        sha256 = hashlib.sha256(data).hexdigest()
        await session.execute(
            pg_insert(Blob)
            .values(sha256=sha256, size=len(data), data=data)
            .on_conflict_do_nothing(index_elements=["sha256"])
        )
        return sha256

    async def get(self, session: AsyncSession, sha256: str) -> bytes | None:
        return await session.scalar(select(Blob.data).where(Blob.sha256 == sha256))


blobs: BlobStore = PostgresBlobStore()
