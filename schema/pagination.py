"""Keyset-cursor connections."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import strawberry

T = TypeVar("T")


class RowPage(Protocol):
    """A page of database rows as the loaders and services return it."""

    rows: list[Any]
    cursors: list[str]
    has_next: bool
    count: Callable[[], Awaitable[int]] | None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="Total number of items; null where counting is not cheap.")
    async def total_count(self) -> int | None:
        return await self.count() if self.count else None

    @classmethod
    def from_page(cls, page: RowPage, convert: Callable[[Any], T]) -> Connection[T]:
        edges = [Edge(cursor=c, node=convert(r)) for c, r in zip(page.cursors, page.rows, strict=True)]
        return cls(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.cursors[-1] if page.cursors else None),
            count=page.count,
        )
