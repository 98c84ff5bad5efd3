"""Run a mutation's service call in one transaction and shape its payload; a UserError becomes payload data."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import UserError as AppUserError
from app.errors import each_error
from schema.errors import UserError

T = TypeVar("T")
P = TypeVar("P")


async def mutate(
    info: strawberry.Info,
    payload: type[P],
    work: Callable[[AsyncSession], Awaitable[T]],
    shape: Callable[[T], dict[str, Any] | Awaitable[dict[str, Any]]],
) -> P:
    """`payload(**shape(result))` when `work` commits; `payload(errors=[...])` when it refused the input and changed nothing."""
    try:
        async with info.context.runtime.transaction() as session:
            result = await work(session)
    except AppUserError as error:
        return payload(errors=[UserError.from_error(e) for e in each_error(error)])
    fields = shape(result)
    return payload(**(await fields if inspect.isawaitable(fields) else fields))
