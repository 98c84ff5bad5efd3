from __future__ import annotations

from enum import Enum

import strawberry

from app.errors import ErrorCode as AppErrorCode

ErrorCode = strawberry.enum(AppErrorCode, name="ErrorCode", description="Why an input was refused.")


@strawberry.enum
class Channel(Enum):
    EMAIL = "email"
    PHONE = "phone"
    CHAT = "chat"
    SMS = "sms"
    WEB = "web"
    SOCIAL = "social"
    NOTE = "note"


@strawberry.enum
class Direction(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


@strawberry.enum
class CustomerStatus(Enum):
    ACTIVE = "active"
    MERGED = "merged"
    ARCHIVED = "archived"
    ERASED = "erased"


@strawberry.enum
class CaseStatus(Enum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    CONSULTATION = "consultation"
    RESOLVED = "resolved"
    CLOSED = "closed"


@strawberry.enum
class Priority(Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


@strawberry.enum
class IdentifierKind(Enum):
    EMAIL = "email"
    PHONE = "phone"
    ACCOUNT_ID = "account_id"
    EXTERNAL_REF = "external_ref"


@strawberry.enum
class Role(Enum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    INTEGRATOR = "integrator"
