"""Rows a batch of ingests creates, held back and written together in one statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor


class HeldRows:
    """Each row is checked by its service and given its id from `sequence` when it is created
    (ids are taken `ids_at_once` at a time), so that the batch's later contacts can stand on it;
    `write` inserts them all with `statement` (given the rows, each with its position, and
    returning the written objects) before anything reads them, then `announce`s each."""

    def __init__(self, session: AsyncSession, *, sequence: str, statement: Executable, ids_at_once: int) -> None:
        self.session = session
        self.take_ids = text(f"SELECT nextval('{sequence}') FROM generate_series(1, :count)")
        self.statement = statement
        self.ids_at_once = ids_at_once
        self.waiting: list[tuple[Actor, dict[str, Any]]] = []
        self.free_ids: list[int] = []

    async def hold(self, actor: Actor, row: dict[str, Any]) -> int:
        """Give a checked row its id; it is written with the others."""
        if not self.free_ids:
            taken = await self.session.scalars(self.take_ids, {"count": self.ids_at_once})
            self.free_ids = sorted(taken, reverse=True)
        row["id"] = self.free_ids.pop()
        self.waiting.append((actor, row))
        return row["id"]

    async def write(self) -> None:
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        rows = [{**row, "position": position} for position, (_, row) in enumerate(waiting)]
        written = {item.id: item for item in (await self.session.execute(self.statement, {"rows": rows})).scalars()}
        for actor, row in waiting:
            await self.announce(actor, row, written[row["id"]])

    async def announce(self, actor: Actor, row: dict[str, Any], written: Any) -> None:
        """What follows the writing of one row (its audit entry, its events)."""
        raise NotImplementedError
