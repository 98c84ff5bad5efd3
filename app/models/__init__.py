"""SQLAlchemy models. Every table module is imported here so Alembic sees one metadata."""

from app.models.base import Base
from app.models.core import (
    CASE_STATUSES,
    CHANNELS,
    CUSTOMER_STATUSES,
    DIRECTIONS,
    IDENTIFIER_KINDS,
    ROLES,
    ApiToken,
    AuditEvent,
    Case,
    CaseCustomer,
    Contact,
    Customer,
    CustomerIdentifier,
    User,
    case_reference_seq,
    customer_number_seq,
)

__all__ = [
    "Base",
    "CASE_STATUSES",
    "CHANNELS",
    "CUSTOMER_STATUSES",
    "DIRECTIONS",
    "IDENTIFIER_KINDS",
    "ROLES",
    "ApiToken",
    "AuditEvent",
    "Case",
    "CaseCustomer",
    "Contact",
    "Customer",
    "CustomerIdentifier",
    "User",
    "case_reference_seq",
    "customer_number_seq",
]
