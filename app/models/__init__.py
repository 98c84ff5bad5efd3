"""SQLAlchemy models, one module per domain. Every table module is imported here so Alembic sees one metadata."""

from app.models.archive import ARCHIVE_ENTITIES, EXPIRY_ACTIONS, ArchiveRule
from app.models.audit import AuditEvent
from app.models.auth import ROLES, ApiToken, User
from app.models.base import Base
from app.models.calendars import Region
from app.models.cases import (
    CASE_STATUSES,
    CATEGORY_OF_STATUS,
    FINISHED_CASE_STATUSES,
    OPEN_CASE_STATUSES,
    PRIORITIES,
    STATUS_CATEGORIES,
    Case,
    CaseCustomer,
    case_reference_seq,
)
from app.models.contacts import CHANNELS, DIRECTIONS, Attachment, Blob, Contact
from app.models.customers import (
    CUSTOMER_STATUSES,
    FIELD_STRATEGIES,
    IDENTIFIER_KINDS,
    Customer,
    CustomerIdentifier,
    CustomerMerge,
    CustomerMergeEntry,
    customer_number_seq,
)
from app.models.events import EventOutbox
from app.models.forms import FIELD_TYPES, CaseTemplate, Dictionary, DictionaryEntry, FormField
from app.models.mail import (
    IMAP_MARKS,
    INBOUND_STATUSES,
    MAIL_INTAKES,
    MAIL_SECURITY,
    OUTBOUND_STATUSES,
    InboundMessage,
    Mailbox,
    OutboundMessage,
)
from app.models.messages import MESSAGE_KINDS, MessageTemplate
from app.models.queues import REPLY_STATUSES, Absence, Pool, PoolMember
from app.models.reasons import ReasonCode
from app.models.recognition import (
    CASE_RULE_KINDS,
    CUSTOMER_RULE_KINDS,
    NO_ROW_POLICY,
    PROMOTION_POLICIES,
    RULE_KINDS,
    RULE_TARGETS,
    NoMatchPolicy,
    PromotionRule,
    RecognitionConfig,
    RecognitionRule,
)
from app.models.search import SEARCH_SORTS, SEARCH_TARGETS, CaseSearchVector, ContactSearchVector, SearchScreen
from app.models.sla import SLA_STAGES, TAT_TARGETS, CaseSla, TatPolicy, TatTarget
from app.models.tasks import TASK_KINDS, TASK_STATUSES, Task
from app.models.workflows import ESCALATION_ACTIONS, USER_MODES, GroupMember, UserGroup, Workflow, WorkflowMode

__all__ = [
    "MESSAGE_KINDS",
    "MessageTemplate",
    "STATUS_CATEGORIES",
    "CATEGORY_OF_STATUS",
    "REPLY_STATUSES",
    "Absence",
    "PoolMember",
    "TASK_KINDS",
    "TASK_STATUSES",
    "Task",
    "FIELD_TYPES",
    "CaseTemplate",
    "Dictionary",
    "DictionaryEntry",
    "FormField",
    "ReasonCode",
    "ARCHIVE_ENTITIES",
    "CASE_RULE_KINDS",
    "EventOutbox",
    "CASE_STATUSES",
    "CHANNELS",
    "CUSTOMER_RULE_KINDS",
    "CUSTOMER_STATUSES",
    "DIRECTIONS",
    "EXPIRY_ACTIONS",
    "FIELD_STRATEGIES",
    "IMAP_MARKS",
    "INBOUND_STATUSES",
    "MAIL_INTAKES",
    "MAIL_SECURITY",
    "OUTBOUND_STATUSES",
    "FINISHED_CASE_STATUSES",
    "IDENTIFIER_KINDS",
    "NO_ROW_POLICY",
    "OPEN_CASE_STATUSES",
    "PRIORITIES",
    "PROMOTION_POLICIES",
    "ROLES",
    "RULE_KINDS",
    "RULE_TARGETS",
    "ApiToken",
    "Attachment",
    "Blob",
    "ArchiveRule",
    "AuditEvent",
    "Base",
    "Case",
    "CaseCustomer",
    "CaseSearchVector",
    "SEARCH_SORTS",
    "SEARCH_TARGETS",
    "SearchScreen",
    "Contact",
    "ContactSearchVector",
    "Customer",
    "CustomerIdentifier",
    "CustomerMerge",
    "CustomerMergeEntry",
    "InboundMessage",
    "Mailbox",
    "OutboundMessage",
    "Pool",
    "NoMatchPolicy",
    "PromotionRule",
    "RecognitionConfig",
    "RecognitionRule",
    "User",
    "case_reference_seq",
    "customer_number_seq",
    "ESCALATION_ACTIONS",
    "SLA_STAGES",
    "TAT_TARGETS",
    "USER_MODES",
    "CaseSla",
    "GroupMember",
    "Region",
    "TatPolicy",
    "TatTarget",
    "UserGroup",
    "Workflow",
    "WorkflowMode",
]
