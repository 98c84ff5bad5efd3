"""Users as the graph shows them."""

from __future__ import annotations

from typing import Any

import strawberry

from schema.enums import Role
from schema.node import Node


@strawberry.type
class User(Node):
    db_id: strawberry.Private[int]
    name: str
    role: Role

    @classmethod
    def from_row(cls, row: Any) -> User:
        return super().from_row(row, role=Role(row.role))
