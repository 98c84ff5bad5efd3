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
from app.models.events import EventOutbox
from app.models.recognition import (
    PROMOTION_POLICIES,
    RULE_KINDS,
    NoMatchPolicy,
    PromotionRule,
    RecognitionConfig,
    RecognitionRule,
)
from app.models.maintenance import (
    ARCHIVE_ENTITIES,
    EXPIRY_ACTIONS,
    ArchiveRule,
    CustomerMerge,
    CustomerMergeEntry,
)

__all__ = [
    "Base",
    "EventOutbox",
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
    "PROMOTION_POLICIES",
    "RULE_KINDS",
    "NoMatchPolicy",
    "PromotionRule",
    "RecognitionConfig",
    "RecognitionRule",
    "ARCHIVE_ENTITIES",
    "EXPIRY_ACTIONS",
    "ArchiveRule",
    "CustomerMerge",
    "CustomerMergeEntry",
]
