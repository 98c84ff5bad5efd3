from __future__ import annotations

import strawberry

from app.errors import UserError as AppUserError
from schema.enums import ErrorCode


@strawberry.type(description="An input the mutation refused; nothing was changed.")
class UserError:
    field: str | None
    code: ErrorCode
    message: str

    @classmethod
    def from_error(cls, error: AppUserError) -> UserError:
        return cls(field=error.field, code=error.code, message=error.message)
