"""Permissions declared on fields and mutations."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission

from app.auth import STAFF_ROLES


def roles(*allowed: str) -> type[BasePermission]:
    """A permission class admitting the given roles (admins are always admitted)."""

    class HasRole(BasePermission):
        message = f"requires role {' or '.join(allowed)}"
        error_extensions = {"code": "FORBIDDEN"}

        def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
            actor = info.context.actor
            return actor is not None and actor.has_role(*allowed)

    HasRole.__name__ = f"HasRole_{'_'.join(allowed)}"
    return HasRole


# Agents and supervisors maintain data; integrators only feed it in.
STAFF = roles(*STAFF_ROLES)
SUPERVISOR = roles("supervisor")
# Mailbox and pool administration.
ADMIN = roles("admin")
