"""Run a mutation's service call in one transaction and turn a UserError into payload data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import UserError as AppUserError
from schema.errors import UserError

T = TypeVar("T")


async def mutate(info: strawberry.Info, work: Callable[[AsyncSession], Awaitable[T]]) -> tuple[T | None, list[UserError]]:
    """(result, []) when `work` commits; (None, [error]) when it refused the input and changed nothing."""
    try:
        async with info.context.runtime.transaction() as session:
            return await work(session), []
    except AppUserError as error:
        return None, [UserError.from_error(error)]
