"""The Node interface (global ids) and loading graph objects by database id through the request's DataLoaders."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import TYPE_CHECKING, Any

import strawberry

from schema.ids import to_global_id

if TYPE_CHECKING:
    from schema.auth import User
    from schema.cases import Case
    from schema.contacts import Contact
    from schema.customers import Customer


@strawberry.interface(description="An object with a global id.")
class Node:
    id: strawberry.ID

    @classmethod
    def from_row(cls, row: Any, **values: Any) -> Any:
        """The object of a database row: its global id, and each field from the column of the same name
        unless given in `values` (enums, renamed fields)."""
        columns = {name: getattr(row, name) for name in _column_fields(cls) if name not in values}
        return cls(id=to_global_id(cls.__name__, row.id), db_id=row.id, **columns, **values)


@cache
def _column_fields(cls: type) -> tuple[str, ...]:
    # Fields with a resolver are not constructor arguments.
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("id", "db_id"))


# The by-id loaders return the graph's types directly (one conversion per row, not per reference).


def load_later(loader: Any, db_id: int | None) -> Any:
    """The loader's future (or None): a sync resolver returns it, and graphql-core awaits it with the rest."""
    return None if db_id is None else loader.load(db_id)


async def load_customer(info: strawberry.Info, customer_id: int | None) -> Customer | None:
    return None if customer_id is None else await info.context.loaders.customer.load(customer_id)


async def load_customers(info: strawberry.Info, customer_ids: list[int]) -> list[Customer]:
    return [c for c in await info.context.loaders.customer.load_many(customer_ids) if c is not None]


async def load_case(info: strawberry.Info, case_id: int | None) -> Case | None:
    return None if case_id is None else await info.context.loaders.case.load(case_id)


async def load_contact(info: strawberry.Info, contact_id: int | None) -> Contact | None:
    return None if contact_id is None else await info.context.loaders.contact.load(contact_id)


async def load_user(info: strawberry.Info, user_id: int | None) -> User | None:
    return None if user_id is None else await info.context.loaders.user.load(user_id)
