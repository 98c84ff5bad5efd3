"""The compiled read path: a read query over table-backed types becomes one SQL statement whose
single result is the response's `data` as JSON text, built by PostgreSQL (as PostGraphile does).

The planner walks the validated operation as graphql-core would (aliases, fragments, inline
fragments, @skip/@include), and compiles each field it knows. Anything else — a field computed in
Python, an argument the executor would refuse, a permission the caller lacks — raises `Fallback`
and the whole operation runs through the executor: nothing is answered half one way and half the
other. Strings are built to match the executor byte for byte: global ids (base64 of "Type:id"),
cursors (urlsafe base64 of a compact JSON list), enums in GraphQL spelling (upper case), and
timestamps as Python's `datetime.isoformat()` of a UTC time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    ListValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
    validate,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.utilities import type_from_ast
from strawberry.extensions import SchemaExtension

from app import limits
from app.errors import UserError
from app.identifiers import normalize_identifier
from app.limits import check_text, unstorable_character
from app.models import CATEGORY_OF_STATUS, CHANNELS, NO_ROW_POLICY, OPEN_CASE_STATUSES
from app.pagination import decode_cursor, page_size
from app.read_pool import ReadFailed
from app.services.customers import _escape_like
from app.services.mail import MAX_INTAKE_ATTEMPTS
from resolvers.query_cost import cost_refusal
from schema.audit import AUDIT_ENTITY_TYPES
from schema.ids import decode_id, from_global_id
from schema.permissions import NODE_READS, permitted

MAX_KEYS = 50  # json_build_object takes at most 100 arguments


class Fallback(Exception):
    """The executor answers this operation (or this request's arguments)."""


@dataclass
class Request:
    """What a plan's bind parameters are computed from."""

    variables: Any  # graphql-core's VariableValues
    actor: Any
    region: str = "GB"  # where phone numbers without a country code are read (the identifier filter)
    memo: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Plan:
    sql: str
    binds: list[Callable[[Request], Any]]
    operations: frozenset[str]  # permission-matrix operations the query needs
    outline: list[str]  # a readable outline of what was compiled, for `casegraph explain`

    def parameters(self, request: Request) -> list[Any]:
        if not all(permitted(request.actor, op) for op in self.operations):
            raise Fallback("permission")
        try:
            return [bind(request) for bind in self.binds]
        except GraphQLError:
            raise Fallback("arguments") from None  # the executor words the error


# ---- SQL fragments matching the executor's strings --------------------------------------------


def _iso(column: str) -> str:
    """`datetime.isoformat()` of a timestamptz read in UTC: microseconds only when not zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN to_char({utc}, 'US') = '000000' THEN '' ELSE '.' || to_char({utc}, 'US') END"
        " || '+00:00' END"
    )


def _base64(text: str, urlsafe: bool = False) -> str:
    # PostgreSQL wraps base64 lines at 76 characters; Python does not.
    encoded = f"encode(convert_to({text}, 'UTF8'), 'base64')"
    return f"translate({encoded}, E'+/\\n', '-_')" if urlsafe else f"replace({encoded}, E'\\n', '')"


def _global_id(type_name: str, row: str) -> str:
    return _base64(f"'{type_name}:' || {row}.id::text")


def _contact_cursor(row: str) -> str:
    # app.pagination.encode_cursor(occurred_at, id): ["<iso>",<id>]
    return _base64(f"'[\"' || {_iso(row + '.occurred_at')} || '\",' || {row}.id::text || ']'", urlsafe=True)


def _id_cursor(row: str) -> str:
    return _base64(f"'[' || {row}.id::text || ']'", urlsafe=True)


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'::text"


def _audit_type_name(row: str) -> str:
    """The global-id type name of an audit event's entity, as schema/audit.py names it."""
    branches = " ".join(f"WHEN {_text(entity)} THEN {_text(name)}" for name, entity in AUDIT_ENTITY_TYPES.items())
    return f"(CASE {row}.entity_type {branches} ELSE {row}.entity_type END)"


# Columns by GraphQL type and field: (SQL of the value given the row alias). JSON fields (custom
# fields, headers, payloads, recognition) are jsonb printed by PostgreSQL: the executor reads that
# same text and prints it again, so the two agree after parsing (keys in jsonb's order, the same
# strings, numbers of the same value).
def _col(name: str) -> Callable[[str], str]:
    return lambda row: f"{row}.{name}"


def _enum(name: str) -> Callable[[str], str]:
    return lambda row: f"upper({row}.{name})"


def _time(name: str) -> Callable[[str], str]:
    return lambda row: _iso(f"{row}.{name}")


def _ref(type_name: str, name: str) -> Callable[[str], str]:
    """The global id of the row a column refers to; null with the column."""
    return lambda row: _base64(f"'{type_name}:' || {row}.{name}::text")


def _sla(expression: str) -> Callable[[str], str]:
    """A value of the case's SLA clock (`sl` in `expression`); null for a case without one."""
    return lambda row: f"(SELECT {expression} FROM case_slas sl WHERE sl.case_id = {row}.id)"


def _sla_breached(clock: str) -> str:
    """services/sla.py state_of's `breached`: a deadline marked or met late, or the next open one passed
    while the clock runs."""
    next_due = (
        f"LEAST(CASE WHEN {clock}.first_responded_at IS NULL THEN {clock}.response_due_at END,"
        f" CASE WHEN {clock}.resolved_at IS NULL THEN {clock}.resolution_due_at END)"
    )
    return (
        f"({clock}.response_breached_at IS NOT NULL OR {clock}.resolution_breached_at IS NOT NULL"
        f" OR coalesce({clock}.first_responded_at > {clock}.response_due_at, false)"
        f" OR coalesce({clock}.resolved_at > {clock}.resolution_due_at, false)"
        f" OR ({clock}.paused_at IS NULL AND coalesce({next_due} <= now(), false)))"
    )


def _task_cursor(row: str) -> str:
    # services/tasks.py cursor_of: [undated, due time (1970 when undated), id]
    undated = "'1,\"1970-01-01T00:00:00+00:00\",'"
    due = f"CASE WHEN {row}.due_at IS NULL THEN {undated} ELSE '0,\"' || {_iso(row + '.due_at')} || '\",' END"
    return _base64(f"'[' || {due} || {row}.id::text || ']'", urlsafe=True)


def _channels(rule: str) -> str:
    """A rule's channels (a jsonb array of values) as enum names, in order."""
    return (
        "coalesce((SELECT json_agg(upper(c.value) ORDER BY c.ordinality)"
        f" FROM jsonb_array_elements_text({rule}.channels) WITH ORDINALITY c), '[]'::json)"
    )


def _backlog(mailbox: str, attempts: str) -> str:
    """services/mail.py inbound_backlog: stored messages still pending, waiting (fewer attempts than the
    intake makes) or given up."""
    return (
        f"(SELECT count(*) FROM inbound_messages i WHERE i.mailbox_id = {mailbox}.id AND i.status = 'pending'"
        f" AND i.attempts {attempts} {MAX_INTAKE_ATTEMPTS})"
    )


def _refused(reason: str) -> str:
    """A json value that fails when it is evaluated, and only then (clock_timestamp() is volatile, so
    nothing folds it at planning): the statement fails and the executor answers with its refusal."""
    return f"(({_text(reason + ' ')} || clock_timestamp()::text)::json)"


COLUMNS: dict[str, dict[str, Callable[[str], str]]] = {
    "Customer": {
        "number": _col("number"),
        "name": _col("name"),
        "status": _enum("status"),
        "fields": _col("fields"),
        "lastActivityAt": _time("last_activity_at"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
    },
    "Case": {
        "reference": _col("reference"),
        "subject": _col("subject"),
        "description": _col("description"),
        "status": _enum("status"),
        "reasonCode": _col("reason_code"),
        "priority": _enum("priority"),
        "severity": _col("severity"),
        "fields": _col("fields"),
        "statusCategory": lambda row: (
            f"(CASE {row}.status {' '.join(f'WHEN {_text(k)} THEN {_text(v.upper())}' for k, v in CATEGORY_OF_STATUS.items())} END)"
        ),
        "waitingSince": _time("waiting_since"),
        "archivedAt": _time("archived_at"),
        "closedAt": _time("closed_at"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
        # The deadlines of the case's clock as the case shows them (its time left is business time,
        # counted by the calendar in Python: not compiled).
        "responseDueAt": _sla(_iso("sl.response_due_at")),
        "resolutionDueAt": _sla(_iso("sl.resolution_due_at")),
        "breached": lambda row: f"coalesce({_sla(_sla_breached('sl'))(row)}, false)",
    },
    "CaseSla": {
        "responseWarnAt": _time("response_warn_at"),
        "responseDueAt": _time("response_due_at"),
        "resolutionWarnAt": _time("resolution_warn_at"),
        "resolutionDueAt": _time("resolution_due_at"),
        "firstRespondedAt": _time("first_responded_at"),
        "paused": lambda row: f"({row}.paused_at IS NOT NULL)",
        "breached": _sla_breached,
        "tatPolicyId": _ref("TatPolicy", "policy_id"),
    },
    "Task": {
        "kind": _enum("kind"),
        "status": _enum("status"),
        "subject": _col("subject"),
        "notes": _col("notes"),
        "dueAt": _time("due_at"),
        "remindAt": _time("remind_at"),
        "remindedAt": _time("reminded_at"),
        "completedAt": _time("completed_at"),
        "cancelledAt": _time("cancelled_at"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
        "overdue": lambda row: f"({row}.status = 'open' AND {row}.due_at IS NOT NULL AND {row}.due_at < now())",
    },
    "ReasonCode": {
        "code": _col("code"),
        "description": _col("description"),
        "category": _enum("category"),
        "active": _col("active"),
        "position": _col("position"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
    },
    "CaseTemplate": {
        "name": _col("name"),
        "description": _col("description"),
        "subject": _col("subject"),
        "priority": _enum("priority"),
        "fields": _col("fields"),
        "active": _col("active"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
    },
    "FormField": {
        "key": _col("key"),
        "label": _col("label"),
        "type": _enum("type"),
        "mandatory": _col("mandatory"),
        "helpText": _col("help_text"),
        "position": _col("position"),
        "pattern": _col("pattern"),
        "patternMessage": _col("pattern_message"),
    },
    "Dictionary": {
        "name": _col("name"),
        "description": _col("description"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
    },
    "DictionaryEntry": {
        "value": _col("value"),
        "label": _col("label"),
        "active": _col("active"),
    },
    "Workflow": {
        "code": _col("code"),
        "description": _col("description"),
        "creatorGroupId": _ref("UserGroup", "creator_group_id"),
        "resolverGroupId": _ref("UserGroup", "resolver_group_id"),
        "escalatorGroupId": _ref("UserGroup", "escalator_group_id"),
        "tatPolicyId": _ref("TatPolicy", "tat_policy_id"),
        "defaultPoolId": _ref("Pool", "default_pool_id"),
        "caseTemplateId": _ref("CaseTemplate", "case_template_id"),
        "escalation": _enum("escalation"),
        "createdAt": _time("created_at"),
    },
    "WorkflowUserMode": {
        "userId": _ref("User", "user_id"),
        "mode": _enum("mode"),
    },
    "PoolMember": {
        "priority": _col("priority"),
    },
    "PoolCounts": {
        "waiting": _col("waiting"),
        "inProgress": _col("in_progress"),
        "oldestWaitingSince": _time("oldest_waiting_since"),
        # Whole seconds, truncated as Python's int() does, never below zero.
        "oldestWaitingSeconds": lambda row: (
            f"(CASE WHEN {row}.oldest_waiting_since IS NOT NULL"
            f" THEN greatest(0, trunc(extract(epoch FROM now() - {row}.oldest_waiting_since)))::int END)"
        ),
    },
    "AutoResponse": {
        "subject": _col("auto_response_subject"),
        "text": _col("auto_response_text"),
    },
    "Absence": {
        "startsAt": _time("starts_at"),
        "endsAt": _time("ends_at"),
        "reason": _col("reason"),
        "createdAt": _time("created_at"),
    },
    "Delivery": {
        "status": _enum("status"),
        "attempts": _col("attempts"),
        "lastResponse": _col("last_response"),
        # Only while it waits for another attempt.
        "nextAttemptAt": lambda row: f"(CASE WHEN {row}.status = 'queued' THEN {_iso(row + '.next_attempt_at')} END)",
        "sentAt": _time("sent_at"),
    },
    "Mailbox": {
        "address": _col("address"),
        "displayName": _col("display_name"),
        "intake": _enum("intake"),
        "enabled": _col("enabled"),
    },
    "ImapSettings": {
        "host": _col("imap_host"),
        "port": _col("imap_port"),
        "security": _enum("imap_security"),
        "user": _col("imap_user"),
        "secretEnv": _col("imap_secret_env"),
        "folder": _col("imap_folder"),
        "mark": _enum("imap_mark"),
        "moveTo": _col("imap_move_to"),
        "idle": _col("imap_idle"),
        "pollSeconds": _col("poll_seconds"),
    },
    "RelaySettings": {
        "host": _col("relay_host"),
        "port": _col("relay_port"),
        "security": _enum("relay_security"),
        "user": _col("relay_user"),
        "secretEnv": _col("relay_secret_env"),
        "fromAddress": _col("relay_from"),
    },
    "MailboxStatus": {
        "lastPolledAt": _time("last_polled_at"),
        # An IMAP uid is unsigned 32-bit: past GraphQL's Int the executor reports the error.
        "lastUid": lambda row: (
            f"(CASE WHEN {row}.imap_last_uid <= 2147483647 THEN to_json({row}.imap_last_uid)"
            f" ELSE {_refused('lastUid beyond Int')} END)"
        ),
        "lastError": _col("last_error"),
        "lastErrorAt": _time("last_error_at"),
        "waitingMessages": lambda row: _backlog(row, "<"),
        "failedMessages": lambda row: _backlog(row, ">="),
    },
    "UserGroup": {
        "name": _col("name"),
        "description": _col("description"),
        "regionId": _ref("Region", "region_id"),
        "poolId": _ref("Pool", "pool_id"),
        "memberIds": lambda row: (
            f"coalesce((SELECT json_agg({_ref('User', 'user_id')('m')} ORDER BY m.user_id)"
            f" FROM group_members m WHERE m.group_id = {row}.id), '[]'::json)"
        ),
        "createdAt": _time("created_at"),
    },
    "TatPolicy": {
        "code": _col("code"),
        "description": _col("description"),
        "pausePendingCustomer": _col("pause_pending_customer"),
        "pauseUnderConsultation": _col("pause_under_consultation"),
        "isDefault": _col("is_default"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
    },
    "TatTarget": {
        "priority": _enum("priority"),
        "target": _enum("target"),
        "minimumMinutes": _col("minimum_minutes"),
        "maximumMinutes": _col("maximum_minutes"),
    },
    "Region": {
        "name": _col("name"),
        "description": _col("description"),
        "timeZone": _col("time_zone"),
        "holidayCountry": _col("holiday_country"),
        "holidaySubdivision": _col("holiday_subdivision"),
        "holidayCalendar": _col("holiday_calendar"),
        "isDefault": _col("is_default"),
        "createdAt": _time("created_at"),
        "updatedAt": _time("updated_at"),
    },
    # A region's business hours: the elements of its jsonb array.
    "BusinessHours": {
        "weekday": lambda row: f"({row}.value -> 'weekday')",
        "start": lambda row: f"({row}.value ->> 'start')",
        "end": lambda row: f"({row}.value ->> 'end')",
    },
    "RecognitionRule": {
        "name": _col("name"),
        "target": _enum("target"),
        "kind": _enum("kind"),
        "config": _col("config"),
        "position": _col("position"),
        "channels": lambda row: _channels(row),
        "enabled": _col("enabled"),
    },
    "PromotionRule": {
        "name": _col("name"),
        "source": _col("source"),
        "target": _enum("target"),
        "field": _col("field"),
        "policy": _enum("policy"),
        "position": _col("position"),
        "channels": lambda row: _channels(row),
        "enabled": _col("enabled"),
    },
    "NoMatchPolicy": {
        "channel": _enum("channel"),
        "createCustomer": _col("create_customer"),
        "createCase": _col("create_case"),
        "flagForReview": _col("flag_for_review"),
    },
    "ArchiveRule": {
        "name": _col("name"),
        "entity": _enum("entity"),
        "inactivityDays": _col("inactivity_days"),
        "exemptWhen": _col("exempt_when"),
        "retentionDays": _col("retention_days"),
        "expiryAction": _enum("expiry_action"),
        "enabled": _col("enabled"),
        "createdAt": _time("created_at"),
    },
    "CustomerMerge": {
        "fieldStrategy": _enum("field_strategy"),
        "moved": _col("counts"),
        "actorName": _col("actor_name"),
        "createdAt": _time("created_at"),
        "undoneAt": _time("undone_at"),
        "undoneBy": _col("undone_by"),
    },
    "ApiToken": {
        "name": _col("name"),
        "createdAt": _time("created_at"),
        "lastUsedAt": _time("last_used_at"),
        "revokedAt": _time("revoked_at"),
    },
    "Contact": {
        "channel": _enum("channel"),
        "direction": _enum("direction"),
        "occurredAt": _time("occurred_at"),
        "subject": _col("subject"),
        "text": _col("text"),
        "html": _col("html"),
        "from": _col("from_address"),
        "to": lambda row: f"{row}.to_addresses::json",
        "source": _col("source"),
        "externalId": _col("external_id"),
        "headers": _col("headers"),
        "payload": _col("payload"),
        "recognition": _col("recognition"),
        "needsReview": _col("needs_review"),
        "createdAt": _time("created_at"),
    },
    "User": {
        "name": _col("name"),
        "email": _col("email"),
        "role": _enum("role"),
        "signature": _col("signature"),
        "active": _col("active"),
        "createdAt": _time("created_at"),
    },
    "CustomerIdentifier": {
        "kind": _enum("kind"),
        "value": _col("value"),
    },
    "Attachment": {
        "filename": _col("filename"),
        "contentType": _col("content_type"),
        "size": _col("size"),
        "inline": _col("inline"),
        "contentId": _col("content_id"),
        "url": lambda row: f"'/attachments/' || {_global_id('Attachment', row)}",
    },
    "Pool": {
        "name": _col("name"),
        "description": _col("description"),
        "priority": _col("priority"),
        "replyStatus": _enum("reply_status"),
        "reopenWithinDays": _col("reopen_within_days"),
        "createdAt": _time("created_at"),
    },
    "AuditEvent": {
        "occurredAt": _time("occurred_at"),
        "actorName": _col("actor_name"),
        "action": _col("action"),
        "entityType": _col("entity_type"),
        "entityId": lambda row: _base64(f"{_audit_type_name(row)} || ':' || {row}.entity_id::text"),
        "before": _col("before"),
        "after": _col("after"),
    },
}
TABLES = {
    "Customer": "customers",
    "Case": "cases",
    "Contact": "contacts",
    "User": "users",
    "CustomerIdentifier": "customer_identifiers",
    "AuditEvent": "audit_events",
    "Attachment": "attachments",
    "Pool": "pools",
    "CaseSla": "case_slas",
    "Task": "tasks",
    "ReasonCode": "reason_codes",
    "CaseTemplate": "case_templates",
    "FormField": "form_fields",
    "Dictionary": "dictionaries",
    "DictionaryEntry": "dictionary_entries",
    "Workflow": "workflows",
    "WorkflowUserMode": "workflow_modes",
    "PoolMember": "pool_members",
    "Absence": "absences",
    "Delivery": "outbound_messages",
    "Mailbox": "mailboxes",
    "UserGroup": "user_groups",
    "TatPolicy": "tat_policies",
    "TatTarget": "tat_targets",
    "Region": "regions",
    "RecognitionRule": "recognition_rules",
    "PromotionRule": "promotion_rules",
    "ArchiveRule": "archive_rules",
    "CustomerMerge": "customer_merges",
    "ApiToken": "api_tokens",
}
# Objects made of other columns of their parent's row.
SAME_ROW: dict[tuple[str, str], str] = {
    ("Mailbox", "imap"): "ImapSettings",
    ("Mailbox", "relay"): "RelaySettings",
    ("Mailbox", "status"): "MailboxStatus",
}
# To-one links by foreign key, loaded by id as the DataLoaders do (no visibility filter there either).
LINKS: dict[tuple[str, str], tuple[str, str]] = {
    ("Contact", "customer"): ("Customer", "customer_id"),
    ("Contact", "case"): ("Case", "case_id"),
    ("Customer", "mergedInto"): ("Customer", "merged_into_id"),
    ("Case", "mergedInto"): ("Case", "merged_into_id"),
    ("Case", "parent"): ("Case", "parent_id"),
    ("Case", "assignee"): ("User", "assignee_id"),
    ("Contact", "agent"): ("User", "agent_id"),
    ("AuditEvent", "actor"): ("User", "actor_user_id"),
    ("Case", "pool"): ("Pool", "pool_id"),
    ("Case", "template"): ("CaseTemplate", "template_id"),
    ("Case", "workflow"): ("Workflow", "workflow_id"),
    ("Task", "customer"): ("Customer", "customer_id"),
    ("Task", "case"): ("Case", "case_id"),
    ("Task", "assignee"): ("User", "assignee_id"),
    ("Task", "createdBy"): ("User", "created_by_id"),
    ("Task", "completedBy"): ("User", "completed_by_id"),
    ("CaseTemplate", "pool"): ("Pool", "pool_id"),
    ("Dictionary", "pool"): ("Pool", "pool_id"),
    ("FormField", "dictionary"): ("Dictionary", "dictionary_id"),
    ("PoolMember", "user"): ("User", "user_id"),
    ("PoolMember", "pool"): ("Pool", "pool_id"),
    ("Absence", "user"): ("User", "user_id"),
    ("Absence", "replacement"): ("User", "replacement_id"),
    ("Mailbox", "pool"): ("Pool", "pool_id"),
    ("CustomerMerge", "survivor"): ("Customer", "survivor_id"),
    ("ApiToken", "user"): ("User", "user_id"),
}
# To-many lists, in the loaders' order: (target, condition on its row {t} given the parent's {row}, order).
LISTS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("CaseTemplate", "form"): ("FormField", "{t}.template_id = {row}.id", "{t}.position, {t}.id"),
    # A dropdown's values: its dictionary's active entries (none without a dictionary).
    ("FormField", "options"): (
        "DictionaryEntry",
        "{t}.dictionary_id = {row}.dictionary_id AND {t}.active",
        "{t}.position, {t}.id",
    ),
    ("Pool", "members"): ("PoolMember", "{t}.pool_id = {row}.id", "{t}.user_id"),
    ("Workflow", "modes"): ("WorkflowUserMode", "{t}.workflow_id = {row}.id", "{t}.user_id"),
    ("TatPolicy", "targets"): ("TatTarget", "{t}.policy_id = {row}.id", "{t}.priority, {t}.target"),
}
NODE_TYPES = ("Customer", "Case", "Contact", "User", "Task", "CaseTemplate", "Dictionary")


def _filter_id(global_id: str | None, type_name: str) -> int | None:
    """A filter's id: none when not given, and one that matches nothing (-1) when of another type."""
    if global_id is None:
        return None
    found = decode_id(global_id, type_name)
    return -1 if found is None else found


def _has_variable(value: Any) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(item.value) for item in value.fields)
    return False


# ---- the planner and compiler -----------------------------------------------------------------


class Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: Any,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables  # coerced; only @skip/@include read them at plan time
        self.binds: list[Callable[[Request], Any]] = []
        self.operations: set[str] = set()
        self.outline: list[str] = []
        self.aliases = 0

    def compile(self, operation: OperationDefinitionNode) -> Plan:
        query_type = self.schema.query_type
        assert query_type is not None
        body = self.object(query_type, self.collect(query_type, [operation.selection_set]), None, 0)
        return Plan(f"SELECT {body}::text", self.binds, frozenset(self.operations), self.outline)

    # Field collection, as graphql-core's CollectFields: first occurrence of a response key fixes its place.
    def collect(self, runtime: GraphQLObjectType, selection_sets: list[SelectionSetNode]) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self._collect(runtime, selection_set, fields, set())
        return fields

    def _collect(
        self, runtime: GraphQLObjectType, selection_set: SelectionSetNode, fields: dict, visited: set[str]
    ) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if selection.type_condition is None or self._matches(selection.type_condition, runtime):
                    self._collect(runtime, selection.selection_set, fields, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.fragments.get(name)
                if fragment is None:
                    raise Fallback("unknown fragment")
                if self._matches(fragment.type_condition, runtime):
                    self._collect(runtime, fragment.selection_set, fields, visited)

    def _matches(self, condition: Any, runtime: GraphQLObjectType) -> bool:
        conditional = type_from_ast(self.schema, condition)
        if conditional is runtime:
            return True
        return conditional is not None and self.schema.is_sub_type(conditional, runtime)

    def _included(self, node: Any) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name == "skip":
                if get_argument_values(GraphQLSkipDirective, directive, self.variables)["if"] is True:
                    return False
            elif name == "include":
                if get_argument_values(GraphQLIncludeDirective, directive, self.variables)["if"] is False:
                    return False
            else:
                raise Fallback(f"directive @{name}")
        return True

    def alias(self) -> str:
        self.aliases += 1
        return f"t{self.aliases}"

    def bind(self, get: Callable[[Request], Any], cast: str) -> str:
        self.binds.append(get)
        return f"${len(self.binds)}::{cast}"

    def arguments(self, parent: GraphQLObjectType, node: FieldNode) -> Callable[[Request], dict[str, Any]]:
        """The field's arguments for a request, coerced as the executor coerces them (once per request)."""
        definition = parent.fields[node.name.value]
        if not any(_has_variable(argument.value) for argument in node.arguments or ()):
            constant: list[dict[str, Any]] = []  # literals only: coerced on the first request, then kept

            def get_constant(request: Request) -> dict[str, Any]:
                if not constant:
                    constant.append(get_argument_values(definition, node, request.variables))
                return constant[0]

            return get_constant

        def get(request: Request) -> dict[str, Any]:
            found = request.memo.get(id(node))
            if found is None:
                found = request.memo[id(node)] = get_argument_values(definition, node, request.variables)
            return found

        return get

    # Objects: json_build_object of the selected keys, in selection order.
    def object(self, type_: GraphQLObjectType, fields: dict[str, list[FieldNode]], row: str | None, depth: int) -> str:
        if len(fields) > MAX_KEYS:
            raise Fallback("too many keys in one object")
        pairs = []
        for key, nodes in fields.items():
            pairs.append(f"'{key}', {self.field(type_, nodes, row, depth)}")
        return f"json_build_object({', '.join(pairs)})"

    def field(self, parent: GraphQLObjectType, nodes: list[FieldNode], row: str | None, depth: int) -> str:
        name = nodes[0].name.value
        self.outline.append(f"{'  ' * depth}{parent.name}.{name}")
        if name == "__typename":
            return _text(parent.name)
        if name.startswith("__"):
            raise Fallback("introspection")
        if parent is self.schema.query_type:
            return self.root(parent, nodes, depth)
        assert row is not None
        if name == "id" and parent.name in TABLES:
            return _global_id(parent.name, row)
        column = COLUMNS.get(parent.name, {}).get(name)
        if column is not None:
            return column(row)
        link = LINKS.get((parent.name, name))
        if link is not None:
            target, foreign_key = link
            return self.row_object(target, nodes, f"{{t}}.id = {row}.{foreign_key}", depth)
        if (parent.name, name) == ("Customer", "contacts"):
            return self.contacts(parent, nodes, row, "customer_id", "Customer.contacts", depth)
        if (parent.name, name) == ("Case", "contacts"):
            return self.contacts(parent, nodes, row, "case_id", "Case.contacts", depth)
        if (parent.name, name) == ("Customer", "cases"):
            return self.customer_cases(parent, nodes, row, depth)
        if (parent.name, name) == ("Customer", "openCases"):
            return self.customer_cases(parent, nodes, row, depth, open_only=True)
        if (parent.name, name) == ("Customer", "latestContact"):
            self.operations.add("Customer.latestContact")
            latest = (
                f"(SELECT c.id FROM contacts c WHERE c.customer_id = {row}.id"
                " ORDER BY c.occurred_at DESC, c.id DESC LIMIT 1)"
            )
            return self.row_object("Contact", nodes, f"{{t}}.id = {latest}", depth)
        if (parent.name, name) == ("Contact", "candidates"):
            # The customers by the ids the contact holds, in that order (the loader's load_many).
            return self.row_list(
                "Customer",
                nodes,
                f"JOIN unnest({row}.candidate_customer_ids) WITH ORDINALITY k(id, ord) ON k.id = {{t}}.id",
                "true",
                "k.ord",
                depth,
            )
        if (parent.name, name) == ("CustomerMerge", "duplicates"):
            # The customers by the ids the merge holds, in that order (the loader's load_many).
            return self.row_list(
                "Customer",
                nodes,
                f"JOIN unnest({row}.duplicate_ids) WITH ORDINALITY k(id, ord) ON k.id = {{t}}.id",
                "true",
                "k.ord",
                depth,
            )
        if (parent.name, name) == ("Contact", "attachments"):
            return self.row_list("Attachment", nodes, "", f"{{t}}.contact_id = {row}.id", "{t}.id", depth)
        if (parent.name, name) == ("Customer", "identifiers"):
            # The loader's order: by kind, then as added.
            return self.row_list(
                "CustomerIdentifier", nodes, "", f"{{t}}.customer_id = {row}.id", "{t}.kind, {t}.id", depth
            )
        if (parent.name, name) == ("Case", "customers"):
            # The primary customer first, then as linked (the loader's order).
            return self.row_list(
                "Customer",
                nodes,
                "JOIN case_customers l ON l.customer_id = {t}.id",
                f"l.case_id = {row}.id",
                "l.is_primary DESC, l.created_at, l.customer_id",
                depth,
            )
        listed = LISTS.get((parent.name, name))
        if listed is not None:
            target, where, order = listed
            return self.row_list(target, nodes, "", where.replace("{row}", row), order, depth)
        if (parent.name, name) == ("Case", "reason"):
            # By code, as the reason-code loader reads it.
            return self.row_object("ReasonCode", nodes, f"{{t}}.code = {row}.reason_code", depth)
        if (parent.name, name) == ("Case", "sla"):
            return self.row_object("CaseSla", nodes, f"{{t}}.case_id = {row}.id", depth)
        same_row = SAME_ROW.get((parent.name, name))
        if same_row is not None:
            type_, fields = self.sub(same_row, nodes)
            return self.object(type_, fields, row, depth + 1)
        if (parent.name, name) == ("Region", "businessHours"):
            type_, fields = self.sub("BusinessHours", nodes)
            h = self.alias()
            return (
                f"coalesce((SELECT json_agg({self.object(type_, fields, h, depth + 1)} ORDER BY {h}.ordinality)"
                f" FROM jsonb_array_elements({row}.business_hours) WITH ORDINALITY {h}), '[]'::json)"
            )
        if (parent.name, name) == ("Contact", "delivery"):
            # The contact's outgoing message (the latest, should there be several).
            latest = f"(SELECT o.id FROM outbound_messages o WHERE o.contact_id = {row}.id ORDER BY o.id DESC LIMIT 1)"
            return self.row_object("Delivery", nodes, f"{{t}}.id = {latest}", depth)
        if (parent.name, name) in (("Pool", "autoResponse"), ("Mailbox", "autoResponse")):
            # Two columns of the same row: no receipt without a subject.
            type_, fields = self.sub("AutoResponse", nodes)
            receipt = self.object(type_, fields, row, depth + 1)
            return f"(CASE WHEN {row}.auto_response_subject IS NULL THEN NULL ELSE {receipt} END)"
        if (parent.name, name) == ("Pool", "counts"):
            return self.pool_counts(nodes, row, depth)
        if (parent.name, name) == ("Dictionary", "entries"):
            args = self.arguments(parent, nodes[0])
            everything = self.bind(lambda r: args(r)["includeInactive"], "boolean")
            where = f"{{t}}.dictionary_id = {row}.id AND ({everything} OR {{t}}.active)"
            return self.row_list("DictionaryEntry", nodes, "", where, "{t}.position, {t}.id", depth)
        if (parent.name, name) == ("Customer", "tasks"):
            return self.owner_tasks(parent, nodes, row, "customers", "customer_id", "Customer.tasks", depth)
        if (parent.name, name) == ("Case", "tasks"):
            return self.owner_tasks(parent, nodes, row, "cases", "case_id", "Case.tasks", depth)
        if (parent.name, name) == ("Case", "primaryCustomer"):
            primary = (
                f"(SELECT l.customer_id FROM case_customers l WHERE l.case_id = {row}.id AND l.is_primary"
                " ORDER BY l.created_at, l.customer_id LIMIT 1)"
            )
            return self.row_object("Customer", nodes, f"{{t}}.id = {primary}", depth)
        raise Fallback(f"{parent.name}.{name} is not compiled")

    def sub(self, type_name: str, nodes: list[FieldNode]) -> tuple[GraphQLObjectType, dict[str, list[FieldNode]]]:
        type_ = self.schema.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType)
        return type_, self.collect(type_, [n.selection_set for n in nodes if n.selection_set])

    def row_object(self, type_name: str, nodes: list[FieldNode], where: str, depth: int) -> str:
        """One row of a table as an object, or null when no row matches `where` ({t} is the row alias)."""
        type_, fields = self.sub(type_name, nodes)
        t = self.alias()
        return f"(SELECT {self.object(type_, fields, t, depth + 1)} FROM {TABLES[type_name]} {t} WHERE {where.format(t=t)})"

    def row_list(self, type_name: str, nodes: list[FieldNode], join: str, where: str, order: str, depth: int) -> str:
        """Rows of a table as a list of objects, in `order` ({t} is the row alias); [] when none match."""
        type_, fields = self.sub(type_name, nodes)
        t = self.alias()
        value = self.object(type_, fields, t, depth + 1)
        return (
            f"coalesce((SELECT json_agg({value} ORDER BY {order.format(t=t)}) FROM {TABLES[type_name]} {t}"
            f" {join.format(t=t)} WHERE {where.format(t=t)}), '[]'::json)"
        )

    # Roots: the same lookups as the resolvers, ids decoded in Python as the resolvers decode them.
    def root(self, query: GraphQLObjectType, nodes: list[FieldNode], depth: int) -> str:
        name = nodes[0].name.value
        args = self.arguments(query, nodes[0])
        if name == "customer":
            self.operations.add("Query.customer")
            customer_id = self.bind(lambda r: decode_id(args(r)["id"], "Customer"), "bigint")
            # A merged customer's id resolves to the survivor, as the resolver does.
            live = (
                "(SELECT CASE WHEN c.status = 'merged' AND c.merged_into_id IS NOT NULL"
                " THEN casegraph_live_customer(c.id, false, false) ELSE c.id END"
                f" FROM customers c WHERE c.id = {customer_id})"
            )
            return self.row_object("Customer", nodes, f"{{t}}.id = {live}", depth)
        if name == "customerByNumber":
            self.operations.add("Query.customerByNumber")
            number = self.bind(lambda r: args(r)["number"].strip().upper(), "text")
            live = f"(SELECT casegraph_live_customer(c.id, false, false) FROM customers c WHERE c.number = {number})"
            return self.row_object("Customer", nodes, f"{{t}}.id = {live}", depth)
        if name == "case":
            self.operations.add("Query.case")
            case_id = self.bind(lambda r: decode_id(args(r)["id"], "Case"), "bigint")
            return self.row_object("Case", nodes, f"{{t}}.id = {case_id}", depth)
        if name == "caseByReference":
            self.operations.add("Query.caseByReference")
            reference = self.bind(lambda r: args(r)["reference"].strip().upper(), "text")
            live = f"(SELECT casegraph_live_case(c.id, false) FROM cases c WHERE c.reference = {reference})"
            return self.row_object("Case", nodes, f"{{t}}.id = {live}", depth)
        if name == "contact":
            self.operations.add("Query.contact")
            contact_id = self.bind(lambda r: decode_id(args(r)["id"], "Contact"), "bigint")
            return self.row_object("Contact", nodes, f"{{t}}.id = {contact_id}", depth)
        if name == "me":
            self.operations.add("Query.me")
            user_id = self.bind(lambda r: r.actor.user_id if r.actor else None, "bigint")
            return self.row_object("User", nodes, f"{{t}}.id = {user_id}", depth)
        if name == "node":
            self.operations.add("Query.node")
            return self.node(args, nodes, depth)
        if name == "customers":
            return self.customers(query, nodes, depth)
        if name == "auditEvents":
            return self.audit_events(query, nodes, depth)
        if name == "users":
            return self.users(query, nodes, depth)
        if name == "cases":
            return self.cases(query, nodes, depth)
        if name == "task":
            self.operations.add("Query.task")
            task_id = self.bind(lambda r: decode_id(args(r)["id"], "Task"), "bigint")
            return self.row_object("Task", nodes, f"{{t}}.id = {task_id}", depth)
        if name == "myTasks":
            return self.task_list(query, nodes, depth, "Query.myTasks", lambda r: r.actor.user_id or -1)
        if name == "tasks":
            return self.task_list(
                query, nodes, depth, "Query.tasks", lambda r: _filter_id(args(r).get("assigneeId"), "User")
            )
        if name in ("myCases", "coveredCases", "poolCases"):
            return self.work_cases(query, nodes, depth)
        if name == "reasonCodes":
            self.operations.add("Query.reasonCodes")
            category = self.bind(lambda r: (c := args(r).get("category")) and c.value, "text")
            everything = self.bind(lambda r: args(r)["includeInactive"], "boolean")
            where = f"({category} IS NULL OR {{t}}.category = {category}) AND ({everything} OR {{t}}.active)"
            return self.row_list("ReasonCode", nodes, "", where, "{t}.position, {t}.code", depth)
        if name == "caseTemplates":
            self.operations.add("Query.caseTemplates")
            everything = self.bind(lambda r: args(r)["includeInactive"], "boolean")
            return self.row_list("CaseTemplate", nodes, "", f"({everything} OR {{t}}.active)", "{t}.name", depth)
        if name == "caseTemplate":
            self.operations.add("Query.caseTemplate")
            template_id = self.bind(lambda r: decode_id(args(r)["id"], "CaseTemplate"), "bigint")
            return self.row_object("CaseTemplate", nodes, f"{{t}}.id = {template_id}", depth)
        if name == "customerForm":
            self.operations.add("Query.customerForm")
            return self.row_list("FormField", nodes, "", "{t}.template_id IS NULL", "{t}.position, {t}.id", depth)
        if name == "dictionaries":
            self.operations.add("Query.dictionaries")
            # All of them without a pool; a pool's (none for an id of another type) with one.
            pool_given = self.bind(lambda r: args(r).get("poolId") is not None, "boolean")
            pool_id = self.bind(lambda r: _filter_id(args(r).get("poolId"), "Pool"), "bigint")
            where = f"(NOT {pool_given} OR {{t}}.pool_id = {pool_id})"
            return self.row_list("Dictionary", nodes, "", where, "{t}.name", depth)
        if name == "pools":
            self.operations.add("Query.pools")
            return self.row_list("Pool", nodes, "", "true", "{t}.priority DESC, {t}.name", depth)
        if name == "myPools":
            self.operations.add("Query.myPools")
            me = self.bind(lambda r: r.actor.user_id, "bigint")
            return self.row_list(
                "PoolMember",
                nodes,
                "JOIN pools p ON p.id = {t}.pool_id",
                f"{{t}}.user_id = {me}",
                "{t}.priority DESC, p.priority DESC, p.id",
                depth,
            )
        if name == "absences":
            self.operations.add("Query.absences")
            user = self.bind(lambda r: _filter_id(args(r).get("userId"), "User"), "bigint")
            current = self.bind(lambda r: args(r)["current"], "boolean")
            where = (
                f"{{t}}.ends_at > now() AND ({user} IS NULL OR {{t}}.user_id = {user})"
                f" AND (NOT {current} OR {{t}}.starts_at <= now())"
            )
            return self.row_list("Absence", nodes, "", where, "{t}.starts_at, {t}.id", depth)
        if name == "workflows":
            self.operations.add("Query.workflows")
            return self.row_list("Workflow", nodes, "", "true", "{t}.code", depth)
        if name == "userGroups":
            self.operations.add("Query.userGroups")
            return self.row_list("UserGroup", nodes, "", "true", "{t}.name", depth)
        if name == "tatPolicies":
            self.operations.add("Query.tatPolicies")
            return self.row_list("TatPolicy", nodes, "", "true", "{t}.code", depth)
        if name == "regions":
            self.operations.add("Query.regions")
            return self.row_list("Region", nodes, "", "true", "{t}.name", depth)
        if name in ("recognitionRules", "promotionRules"):
            self.operations.add(f"Query.{name}")
            type_name = "RecognitionRule" if name == "recognitionRules" else "PromotionRule"
            return self.row_list(type_name, nodes, "", "true", "{t}.position, {t}.id", depth)
        if name == "archiveRules":
            self.operations.add("Query.archiveRules")
            return self.row_list("ArchiveRule", nodes, "", "true", "{t}.id", depth)
        if name == "noMatchPolicies":
            return self.no_match_policies(nodes, depth)
        if name == "customerMerge":
            self.operations.add("Query.customerMerge")
            merge_id = self.bind(lambda r: decode_id(args(r)["id"], "CustomerMerge"), "bigint")
            return self.row_object("CustomerMerge", nodes, f"{{t}}.id = {merge_id}", depth)
        if name == "tokens":
            return self.tokens(query, nodes, depth)
        if name == "mailboxes":
            self.operations.add("Query.mailboxes")
            return self.row_list("Mailbox", nodes, "", "true", "{t}.address", depth)
        if name == "mailbox":
            self.operations.add("Query.mailbox")
            mailbox_id = self.bind(lambda r: decode_id(args(r)["id"], "Mailbox"), "bigint")
            return self.row_object("Mailbox", nodes, f"{{t}}.id = {mailbox_id}", depth)
        raise Fallback(f"Query.{name} is not compiled")

    def node(self, args: Callable[[Request], dict[str, Any]], nodes: list[FieldNode], depth: int) -> str:
        def decoded(request: Request) -> tuple[str, int] | None:
            found = from_global_id(args(request)["id"])
            if found is None or found[0] not in NODE_READS:
                return None  # not one of ours: null, as the resolver answers
            if found[0] not in NODE_TYPES:
                raise Fallback(f"node of type {found[0]}")
            if not permitted(request.actor, NODE_READS[found[0]]):
                raise Fallback("permission")  # the executor words the refusal
            return found

        type_name = self.bind(lambda r: (d := decoded(r)) and d[0], "text")
        db_id = self.bind(lambda r: (d := decoded(r)) and d[1], "bigint")
        branches = " ".join(
            f"WHEN {_text(t)} THEN {self.row_object(t, nodes, f'{{t}}.id = {db_id}', depth)}" for t in NODE_TYPES
        )
        return f"(CASE {type_name} {branches} END)"

    # Connections: keyset pages fetched with one row more than asked, as the loaders do.
    def page_arguments(self, args: Callable[[Request], dict[str, Any]], after_types: tuple[type, ...]):
        def first(request: Request) -> int:
            try:
                return page_size(args(request).get("first"))
            except UserError:
                raise Fallback("invalid first") from None

        def after(request: Request) -> list[Any] | None:
            cursor = args(request).get("after")
            if cursor is None or cursor == "":
                return None
            try:
                return decode_cursor(cursor, *after_types)
            except UserError:
                raise Fallback("invalid cursor") from None

        return first, after

    def given(self, parent: GraphQLObjectType, node: FieldNode, name: str) -> bool:
        """Whether an optional argument has a value. Part of the plan's shape (plans are keyed by which
        variables are null), so that the statement of a first page has no cursor condition at all and
        a later page's cursor is an index condition: keyset pages, never scans from the top."""
        value = get_argument_values(parent.fields[node.name.value], node, self.variables).get(name)
        return value is not None and value != ""

    def contacts(self, parent, nodes, row: str, owner_column: str, operation: str, depth: int) -> str:
        args, first, after_of = self.page_start(parent, nodes, operation, (datetime, int))
        t = self.alias()
        where = f"{t}.{owner_column} = {row}.id"
        count_where = f"c.{owner_column} = {row}.id"
        if owner_column == "customer_id" and self.given(parent, nodes[0], "channel"):
            # The channel filter applies to the page and to the count.
            channel = self.bind(lambda r: args(r)["channel"].value, "text")
            where += f" AND {t}.channel = {channel}"
            count_where += f" AND c.channel = {channel}"
        if self.given(parent, nodes[0], "after"):
            after_time = self.bind(lambda r: after_of(r)[0], "timestamptz")
            after_id = self.bind(lambda r: after_of(r)[1], "bigint")
            where += f" AND ({t}.occurred_at, {t}.id) < ({after_time}, {after_id})"
        order = f"{t}.occurred_at DESC, {t}.id DESC"
        page = (
            f"SELECT {t}.*, row_number() OVER (ORDER BY {order}) AS rn__ FROM contacts {t}"
            f" WHERE {where} ORDER BY {order} LIMIT {first} + 1"
        )
        total = f"(SELECT count(*) FROM contacts c WHERE {count_where})"
        return self.connection(parent, nodes, "Contact", page, first, _contact_cursor, total, depth)

    def page_start(self, parent, nodes, operation: str, cursor_types: tuple = (int,)):
        """A connection's arguments, its page size bound, and its `after` cursor's reader."""
        self.operations.add(operation)
        args = self.arguments(parent, nodes[0])
        first_of, after_of = self.page_arguments(args, cursor_types)
        return args, self.bind(first_of, "int"), after_of

    def id_page(
        self,
        parent,
        nodes,
        depth: int,
        node_type: str,
        source: str,
        t: str,
        where: str,
        first: str,
        after_of,
        newest_first: bool = True,
    ) -> str:
        """A connection over rows paged by id (newest first unless said otherwise): `source` is
        the table aliased `t` (with any join), `where` what the rows must meet."""
        order, beyond = (f"{t}.id DESC", "<") if newest_first else (f"{t}.id", ">")
        if self.given(parent, nodes[0], "after"):
            after_id = self.bind(lambda r: after_of(r)[0], "bigint")
            where += f" AND {t}.id {beyond} {after_id}"
        page = (
            f"SELECT {t}.*, row_number() OVER (ORDER BY {order}) AS rn__ FROM {source}"
            f" WHERE {where} ORDER BY {order} LIMIT {first} + 1"
        )
        return self.connection(parent, nodes, node_type, page, first, _id_cursor, "NULL::int", depth)

    def customer_cases(self, parent, nodes, row: str, depth: int, open_only: bool = False) -> str:
        _, first, after_of = self.page_start(parent, nodes, "Customer.openCases" if open_only else "Customer.cases")
        t = self.alias()
        where = f"l.customer_id = {row}.id AND {t}.merged_into_id IS NULL"
        if open_only:  # app/history.py's open cases: not finished, not archived
            where += f" AND {t}.status IN ({', '.join(map(_text, OPEN_CASE_STATUSES))}) AND {t}.archived_at IS NULL"
        # The executor does not count a customer's cases: totalCount is null there.
        source = f"cases {t} JOIN case_customers l ON l.case_id = {t}.id"
        return self.id_page(parent, nodes, depth, "Case", source, t, where, first, after_of)

    # List roots, as the services list them (newest first). Each filter is one condition that a null
    # bind switches off, so that a plan serves every filter value a variable may hold.
    def filter_value(self, args, name: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[Request], Any]:
        def get(request: Request) -> Any:
            value = (args(request).get("filter") or {}).get(name)
            if value is None:
                return None
            try:
                return convert(value)
            except UserError:
                raise Fallback(f"filter.{name}") from None  # the executor words the refusal

        return get

    def customers(self, query: GraphQLObjectType, nodes: list[FieldNode], depth: int) -> str:
        args, first, after_of = self.page_start(query, nodes, "Query.customers")
        status = self.bind(self.filter_value(args, "status", lambda v: v.value), "text")

        def pattern(search: str) -> str | None:
            check_text(search, "filter.search", limits.SEARCH)
            return f"%{_escape_like(search)}%" if search else None

        search = self.bind(self.filter_value(args, "search", pattern), "text")
        identifier_of = self.filter_value(args, "identifier", lambda v: v)

        def identifier(request: Request) -> tuple[str, str] | None:
            given = identifier_of(request)
            if given is None:
                return None
            kind = given["kind"].value
            try:
                value = normalize_identifier(kind, given["value"], region=request.region, field="filter.identifier")
            except UserError:
                raise Fallback("filter.identifier") from None
            return kind, value

        kind = self.bind(lambda r: (found := identifier(r)) and found[0], "text")
        value = self.bind(lambda r: (found := identifier(r)) and found[1], "text")
        t = self.alias()
        where = (
            f"{t}.status = coalesce({status}, 'active') AND ({search} IS NULL OR {t}.name ILIKE {search})"
            f" AND ({kind} IS NULL OR EXISTS (SELECT 1 FROM customer_identifiers i"
            f" WHERE i.customer_id = {t}.id AND i.kind = {kind} AND i.value = {value}))"
        )
        return self.id_page(query, nodes, depth, "Customer", f"customers {t}", t, where, first, after_of)

    def users(self, query: GraphQLObjectType, nodes: list[FieldNode], depth: int) -> str:
        args, first, after_of = self.page_start(query, nodes, "Query.users")
        active = self.bind(self.filter_value(args, "active"), "boolean")
        t = self.alias()
        where = f"({active} IS NULL OR {t}.active = {active})"
        # In the order users were created (oldest first), unlike every other list.
        return self.id_page(query, nodes, depth, "User", f"users {t}", t, where, first, after_of, newest_first=False)

    def audit_events(self, query: GraphQLObjectType, nodes: list[FieldNode], depth: int) -> str:
        args, first, after_of = self.page_start(query, nodes, "Query.auditEvents")

        def entity(request: Request) -> tuple[str, int] | None:
            decoded = from_global_id(args(request)["entityId"])
            if decoded is None or decoded[0] not in AUDIT_ENTITY_TYPES:
                return None  # an empty trail, as the resolver answers
            return AUDIT_ENTITY_TYPES[decoded[0]], decoded[1]

        entity_type = self.bind(lambda r: (found := entity(r)) and found[0], "text")
        entity_id = self.bind(lambda r: (found := entity(r)) and found[1], "bigint")
        t = self.alias()
        where = f"{t}.entity_type = {entity_type} AND {t}.entity_id = {entity_id}"
        return self.id_page(query, nodes, depth, "AuditEvent", f"audit_events {t}", t, where, first, after_of)

    def cases(self, query: GraphQLObjectType, nodes: list[FieldNode], depth: int) -> str:
        args, first, after_of = self.page_start(query, nodes, "Query.cases")
        status = self.bind(self.filter_value(args, "status", lambda v: v.value), "text")
        # An id of the wrong type matches nothing (-1), as the resolver's filter does.
        customer = self.bind(self.filter_value(args, "customerId", lambda v: decode_id(v, "Customer") or -1), "bigint")
        assignee = self.bind(self.filter_value(args, "assigneeId", lambda v: decode_id(v, "User") or -1), "bigint")
        t = self.alias()
        where = (
            f"{t}.merged_into_id IS NULL AND {t}.archived_at IS NULL"
            f" AND ({status} IS NULL OR {t}.status = {status})"
            f" AND ({customer} IS NULL OR EXISTS (SELECT 1 FROM case_customers l"
            f" WHERE l.case_id = {t}.id AND l.customer_id = {customer}))"
            f" AND ({assignee} IS NULL OR {t}.assignee_id = {assignee})"
        )
        return self.id_page(query, nodes, depth, "Case", f"cases {t}", t, where, first, after_of)

    def no_match_policies(self, nodes: list[FieldNode], depth: int) -> str:
        """Every channel's policy in the channels' order; a channel without a row shows the engine's default."""
        self.operations.add("Query.noMatchPolicies")
        type_, fields = self.sub("NoMatchPolicy", nodes)
        p = self.alias()
        channels = ", ".join(map(_text, CHANNELS))
        defaults = ", ".join(
            f"coalesce(s.{flag}, {'true' if NO_ROW_POLICY[flag] else 'false'}) AS {flag}" for flag in NO_ROW_POLICY
        )
        rows = (
            f"SELECT c.channel, c.ord, {defaults} FROM unnest(ARRAY[{channels}]) WITH ORDINALITY c(channel, ord)"
            " LEFT JOIN no_match_policies s ON s.channel = c.channel"
        )
        return (
            f"coalesce((SELECT json_agg({self.object(type_, fields, p, depth + 1)} ORDER BY {p}.ord)"
            f" FROM ({rows}) {p}), '[]'::json)"
        )

    def tokens(self, query: GraphQLObjectType, nodes: list[FieldNode], depth: int) -> str:
        args, first, after_of = self.page_start(query, nodes, "Query.tokens")

        def user(request: Request) -> int | None:
            given = (args(request).get("filter") or {}).get("userId")
            if given is None:
                return None
            found = decode_id(given, "User")
            if found is None:
                raise Fallback("filter.userId")  # the executor's NOT_FOUND
            return found

        user_id = self.bind(user, "bigint")
        revoked = self.bind(self.filter_value(args, "revoked"), "boolean")
        t = self.alias()
        where = (
            f"({user_id} IS NULL OR {t}.user_id = {user_id})"
            f" AND ({revoked} IS NULL OR ({t}.revoked_at IS NOT NULL) = {revoked})"
        )
        return self.id_page(query, nodes, depth, "ApiToken", f"api_tokens {t}", t, where, first, after_of)

    def pool_counts(self, nodes: list[FieldNode], row: str, depth: int) -> str:
        """services/queues.py pool_counts: the pool's live, unfinished cases, waiting and held."""
        type_, fields = self.sub("PoolCounts", nodes)
        c = self.alias()
        counted = (
            "SELECT count(*) FILTER (WHERE k.waiting_since IS NOT NULL) AS waiting,"
            " count(*) FILTER (WHERE k.assignee_id IS NOT NULL) AS in_progress,"
            " min(k.waiting_since) AS oldest_waiting_since"
            f" FROM cases k WHERE k.pool_id = {row}.id AND k.status IN ({', '.join(map(_text, OPEN_CASE_STATUSES))})"
            " AND k.merged_into_id IS NULL AND k.archived_at IS NULL"
        )
        return f"(SELECT {self.object(type_, fields, c, depth + 1)} FROM ({counted}) {c})"

    # Tasks: soonest due first, undated last (services/tasks.py), keyset cursors [undated, due, id].
    def task_page(self, parent, nodes, depth: int, t: str, where: str, first: str, after_of, total: str) -> str:
        if self.given(parent, nodes[0], "after"):
            undated = self.bind(lambda r: after_of(r)[0], "bigint")
            after_due = self.bind(lambda r: after_of(r)[1], "timestamptz")
            after_id = self.bind(lambda r: after_of(r)[2], "bigint")
            where += (
                f" AND (({undated} <> 0 AND {t}.due_at IS NULL AND {t}.id > {after_id})"
                f" OR ({undated} = 0 AND ({t}.due_at IS NULL OR ({t}.due_at, {t}.id) > ({after_due}, {after_id}))))"
            )
        order = f"{t}.due_at ASC NULLS LAST, {t}.id ASC"
        page = (
            f"SELECT {t}.*, row_number() OVER (ORDER BY {order}) AS rn__ FROM tasks {t}"
            f" WHERE {where} ORDER BY {order} LIMIT {first} + 1"
        )
        return self.connection(parent, nodes, "Task", page, first, _task_cursor, total, depth)

    def owner_tasks(self, parent, nodes, row: str, owners: str, column: str, operation: str, depth: int) -> str:
        args, first, after_of = self.page_start(parent, nodes, operation, (int, datetime, int))
        t = self.alias()
        # A customer's or case's tasks include those of the ones merged into it.
        where = f"{t}.{column} IN (SELECT o.id FROM {owners} o WHERE o.id = {row}.id OR o.merged_into_id = {row}.id)"
        if self.given(parent, nodes[0], "status"):
            status = self.bind(lambda r: args(r)["status"].value, "text")
            where += f" AND {t}.status = {status}"
        # The executor does not count an owner's tasks: totalCount is null there.
        return self.task_page(parent, nodes, depth, t, where, first, after_of, "NULL::int")

    def task_list(self, query, nodes, depth: int, operation: str, assignee_of: Callable[[Request], Any]) -> str:
        args, first, after_of = self.page_start(query, nodes, operation, (int, datetime, int))
        assignee = self.bind(assignee_of, "bigint")
        status = self.bind(self.filter_value(args, "status", lambda v: v.value), "text")
        kind = self.bind(self.filter_value(args, "kind", lambda v: v.value), "text")
        before = self.bind(self.filter_value(args, "dueBefore"), "timestamptz")
        since = self.bind(self.filter_value(args, "dueAfter"), "timestamptz")
        overdue = self.bind(self.filter_value(args, "overdue"), "boolean")
        customer = self.bind(self.filter_value(args, "customerId", lambda v: _filter_id(v, "Customer")), "bigint")
        case = self.bind(self.filter_value(args, "caseId", lambda v: _filter_id(v, "Case")), "bigint")

        def conditions(t: str) -> str:
            late = f"({t}.status = 'open' AND {t}.due_at IS NOT NULL AND {t}.due_at < now())"
            return (
                f"({assignee} IS NULL OR {t}.assignee_id = {assignee})"
                f" AND ({status} IS NULL OR {t}.status = {status}) AND ({kind} IS NULL OR {t}.kind = {kind})"
                f" AND ({before} IS NULL OR {t}.due_at < {before}) AND ({since} IS NULL OR {t}.due_at >= {since})"
                f" AND ({customer} IS NULL OR {t}.customer_id = {customer})"
                f" AND ({case} IS NULL OR {t}.case_id = {case}) AND ({overdue} IS NULL OR {late} = {overdue})"
            )

        t = self.alias()
        total = f"(SELECT count(*) FROM tasks k WHERE {conditions('k')})"
        return self.task_page(query, nodes, depth, t, conditions(t), first, after_of, total)

    def work_cases(self, query, nodes, depth: int) -> str:
        """myCases, coveredCases and poolCases: services/cases.py list_cases, newest first."""
        name = nodes[0].name.value
        args, first, after_of = self.page_start(query, nodes, f"Query.{name}")
        t = self.alias()
        where = f"{t}.merged_into_id IS NULL AND {t}.archived_at IS NULL"
        if name == "coveredCases":
            # The cases of the agents the caller replaces now.
            def replacing(request: Request) -> int:
                if request.actor.user_id is None:
                    raise Fallback("a caller without a user")  # the service would read every absence
                return request.actor.user_id

            me = self.bind(replacing, "bigint")
            where += (
                f" AND {t}.status IN ({', '.join(map(_text, OPEN_CASE_STATUSES))}) AND {t}.assignee_id IN"
                f" (SELECT a.user_id FROM absences a WHERE a.replacement_id = {me}"
                " AND a.starts_at <= now() AND a.ends_at > now())"
            )
            return self.id_page(query, nodes, depth, "Case", f"cases {t}", t, where, first, after_of)
        # The open statuses unless one is given.
        statuses = self.bind(
            lambda r: [s.value] if (s := args(r).get("status")) else list(OPEN_CASE_STATUSES), "text[]"
        )
        where += f" AND {t}.status = ANY({statuses})"
        if name == "myCases":
            me = self.bind(lambda r: r.actor.user_id or -1, "bigint")
            where += f" AND {t}.assignee_id = {me}"
            return self.id_page(query, nodes, depth, "Case", f"cases {t}", t, where, first, after_of)

        def pool_of(request: Request) -> int:
            pool = decode_id(args(request)["poolId"], "Pool")
            if pool is None:
                raise Fallback("poolId")  # the executor's NOT_FOUND
            return pool

        pool = self.bind(pool_of, "bigint")
        supervisor = self.bind(lambda r: r.actor.has_role("supervisor"), "boolean")
        me = self.bind(lambda r: r.actor.user_id, "bigint")
        waiting = self.bind(lambda r: args(r).get("waiting"), "boolean")
        where += f" AND {t}.pool_id = {pool} AND ({waiting} IS NULL OR ({t}.waiting_since IS NOT NULL) = {waiting})"
        # Supervisors see every pool, an agent the pools they serve; for another pool the statement
        # fails, and the executor answers with its NOT_FOUND.
        visible = (
            f"(CASE WHEN {supervisor} THEN EXISTS (SELECT 1 FROM pools v WHERE v.id = {pool})"
            f" ELSE EXISTS (SELECT 1 FROM pool_members v WHERE v.pool_id = {pool} AND v.user_id = {me}) END)"
        )
        page = self.id_page(query, nodes, depth, "Case", f"cases {t}", t, where, first, after_of)
        return f"(CASE WHEN {visible} THEN {page} ELSE {_refused('no such pool among yours')} END)"

    def connection(self, parent, nodes, node_type: str, page: str, first: str, cursor, total: str, depth: int) -> str:
        connection_type = parent.fields[nodes[0].name.value].type
        while hasattr(connection_type, "of_type"):
            connection_type = connection_type.of_type
        fields = self.collect(connection_type, [n.selection_set for n in nodes if n.selection_set])
        p = self.alias()
        kept = f"{p}.rn__ <= {first}"
        pairs = []
        for key, sub in fields.items():
            name = sub[0].name.value
            self.outline.append(f"{'  ' * (depth + 1)}{connection_type.name}.{name}")
            if name == "__typename":
                value = _text(connection_type.name)
            elif name == "totalCount":
                value = total
            elif name == "edges":
                edge_type = connection_type.fields["edges"].type
                while hasattr(edge_type, "of_type"):
                    edge_type = edge_type.of_type
                edge_fields = self.collect(edge_type, [n.selection_set for n in sub if n.selection_set])
                edge_pairs = []
                for edge_key, edge_nodes in edge_fields.items():
                    edge_name = edge_nodes[0].name.value
                    self.outline.append(f"{'  ' * (depth + 2)}{edge_type.name}.{edge_name}")
                    if edge_name == "__typename":
                        edge_pairs.append(f"'{edge_key}', {_text(edge_type.name)}")
                    elif edge_name == "cursor":
                        edge_pairs.append(f"'{edge_key}', {cursor(p)}")
                    elif edge_name == "node":
                        node_type_, node_fields = self.sub(node_type, edge_nodes)
                        edge_pairs.append(f"'{edge_key}', {self.object(node_type_, node_fields, p, depth + 3)}")
                    else:
                        raise Fallback(f"{edge_type.name}.{edge_name}")
                if len(edge_pairs) > MAX_KEYS:
                    raise Fallback("too many keys in one object")
                value = (
                    f"coalesce(json_agg(json_build_object({', '.join(edge_pairs)}) ORDER BY {p}.rn__)"
                    f" FILTER (WHERE {kept}), '[]'::json)"
                )
            elif name == "pageInfo":
                info_type, info_fields = self.sub("PageInfo", sub)
                info_pairs = []
                for info_key, info_nodes in info_fields.items():
                    info_name = info_nodes[0].name.value
                    if info_name == "__typename":
                        info_pairs.append(f"'{info_key}', {_text(info_type.name)}")
                    elif info_name == "hasNextPage":
                        info_pairs.append(f"'{info_key}', count(*) > {first}")
                    elif info_name == "endCursor":
                        last = f"(array_agg({cursor(p)} ORDER BY {p}.rn__ DESC) FILTER (WHERE {kept}))[1]"
                        info_pairs.append(f"'{info_key}', {last}")
                    else:
                        raise Fallback(f"PageInfo.{info_name}")
                value = f"json_build_object({', '.join(info_pairs)})"
            else:
                raise Fallback(f"{connection_type.name}.{name}")
            pairs.append(f"'{key}', {value}")
        if len(pairs) > MAX_KEYS:
            raise Fallback("too many keys in one object")
        # HAVING makes it one group: one row even when the page is empty.
        return f"(SELECT json_build_object({', '.join(pairs)}) FROM ({page}) {p} HAVING true)"


# ---- plans, cached per document, operation and the booleans that steer @skip/@include ----------


@dataclass
class Prepared:
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    boolean_variables: tuple[str, ...]
    variable_names: tuple[str, ...]  # absent and null alike: a missing variable is not in the coerced values


_operations: dict[tuple[str, str | None], Prepared | None] = {}
_plans: dict[tuple, Plan | None] = {}
CACHE_SIZE = 512


def _remember(cache: dict, key: Any, value: Any) -> Any:
    if len(cache) >= CACHE_SIZE:
        cache.pop(next(iter(cache)))  # the oldest: documents are few in practice
    cache[key] = value
    return value


def _named(type_node: Any) -> str | None:
    """`Boolean` for `Boolean` and `Boolean!`; None for lists."""
    if isinstance(type_node, NonNullTypeNode):
        type_node = type_node.type
    return type_node.name.value if isinstance(type_node, NamedTypeNode) else None


def _prepare(document: Any, operation_name: str | None) -> Prepared | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)]
    if len(chosen) != 1 or chosen[0].operation is not OperationType.QUERY:
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    booleans = tuple(v.variable.name.value for v in chosen[0].variable_definitions or () if _named(v.type) == "Boolean")
    names = tuple(v.variable.name.value for v in chosen[0].variable_definitions or ())
    return Prepared(chosen[0], fragments, booleans, names)


def plan_for(
    schema: GraphQLSchema, source: str, document: Any, operation_name: str | None, raw_variables: dict | None
) -> tuple[Plan, Any]:
    """The plan of an operation and its coerced variables; Fallback when it does not compile."""
    key = (source, operation_name)
    if key in _operations:
        prepared = _operations[key]
    else:
        prepared = _remember(_operations, key, _prepare(document, operation_name))
    if prepared is None:
        raise Fallback("not a single query operation")
    coerced = get_variable_values(schema, prepared.operation.variable_definitions or (), raw_variables or {})
    if isinstance(coerced, list):
        raise Fallback("variables")  # the executor reports them
    variables = coerced  # graphql-core's VariableValues, as get_argument_values takes them
    # The shape of a plan depends on the Booleans of @skip/@include and on which optional arguments are given.
    plan_key = (
        source,
        operation_name,
        tuple(variables.coerced.get(name) for name in prepared.boolean_variables),
        tuple(name for name in prepared.variable_names if variables.coerced.get(name) in (None, "")),
    )
    if plan_key in _plans:
        plan = _plans[plan_key]
    else:
        try:
            plan = Compiler(schema, prepared.fragments, variables).compile(prepared.operation)
        except (Fallback, GraphQLError):  # a directive's argument the executor refuses, worded its way
            plan = None
        _remember(_plans, plan_key, plan)
    if plan is None:
        raise Fallback("not compilable")
    return plan, variables


# ---- admitted documents: the hot path --------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    """A document that passed every check before execution once (parsing, validation, the depth,
    alias and token limits, its literals) and compiled. A later request with the same text skips
    those and checks only what is its own: its variables, the cost they give, the caller's role."""

    document: DocumentNode
    max_cost: int | None  # set when variables may give page sizes: the cost is then checked per request


# Per schema (its limits are its own), by document text and the operation name as sent.
_admitted: WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str | None], Admitted]] = WeakKeyDictionary()


def admit(
    schema: GraphQLSchema, source: str, operation_name: str | None, document: DocumentNode, max_cost: int
) -> None:
    admitted = _admitted.setdefault(schema, {})
    if (source, operation_name) in admitted:
        return
    prepared = _operations.get((source, operation_name))
    if prepared is None:
        prepared = _prepare(document, operation_name)
    if prepared is None:
        return
    ints = any(_named(v.type) == "Int" for v in prepared.operation.variable_definitions or ())
    _remember(admitted, (source, operation_name), Admitted(document, max_cost if ints else None))


async def answer_admitted(
    schema: GraphQLSchema,
    source: str,
    operation_name: str | None,
    raw_variables: dict[str, Any] | None,
    actor: Any,
    reads: Any,
    region: str,
) -> bytes | None:
    """The `data` of an admitted document as JSON, or None: then the whole pipeline runs and words
    whatever refusal there is, exactly as for a document seen for the first time."""
    admitted = _admitted.get(schema, {}).get((source, operation_name))
    if admitted is None:
        return None
    if raw_variables and unstorable_character(raw_variables) is not None:
        return None
    if admitted.max_cost is not None and cost_refusal(
        schema, admitted.document, operation_name, raw_variables or {}, admitted.max_cost
    ):
        return None
    try:
        plan, variables = plan_for(schema, source, admitted.document, operation_name, raw_variables)
        parameters = plan.parameters(Request(variables, actor, region))
        return await reads.fetch(plan.sql, parameters)
    except (Fallback, ReadFailed):
        return None


class CompiledReads(SchemaExtension):
    """Answers a compilable read query with one SQL statement, after every check that comes before
    execution (parsing, validation, limits, cost, unstorable characters). Only where the transport
    asks for it (`context.compile_reads`): the result's data is then pre-serialised JSON. A document
    answered here is admitted: the transport answers its next requests without strawberry."""

    def __init__(self, *, max_cost: int) -> None:
        super().__init__()
        self.max_cost = max_cost

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if execution.result is None and getattr(context, "compile_reads", False) and execution.graphql_document:
            schema = execution.schema._schema
            try:
                plan, variables = plan_for(
                    schema,
                    execution.query or "",
                    execution.graphql_document,
                    execution.operation_name,
                    execution.variables,
                )
                parameters = plan.parameters(Request(variables, context.actor, context.phone_region))
                data = await context.runtime.compiled_reads.fetch(plan.sql, parameters)
            except (Fallback, ReadFailed):
                pass  # the executor answers: a database error is met there and reported as it is today
            else:
                execution.result = GraphQLExecutionResult(data=orjson.Fragment(data), errors=None)  # type: ignore[arg-type]
                context.answered_by = "compiled"
                # Keyed by the operation name the client sent, as the transport looks it up.
                provided = execution._provided_operation_name  # strawberry keeps no public copy
                admit(schema, execution.query or "", provided, execution.graphql_document, self.max_cost)
        yield


async def explain(
    engine: Any,
    schema: GraphQLSchema,
    source: str,
    *,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    actor: Any = None,
    analyze: bool = False,
) -> str:
    """What `casegraph explain` prints: the outline of the plan, its SQL and PostgreSQL's plan for it,
    or why the operation falls back to the executor."""
    document = parse(source)
    errors = validate(schema, document)
    if errors:
        return "Invalid document:\n" + "\n".join(f"  {e.message}" for e in errors)
    prepared = _prepare(document, operation_name)
    if prepared is None:
        return "Falls back to the executor: not a single query operation"
    coerced = get_variable_values(schema, prepared.operation.variable_definitions or (), variables or {})
    if isinstance(coerced, list):
        return "Falls back to the executor: " + "; ".join(e.message for e in coerced)
    try:
        plan = Compiler(schema, prepared.fragments, coerced).compile(prepared.operation)
    except (Fallback, GraphQLError) as reason:
        return f"Falls back to the executor: {reason}"
    try:
        parameters = plan.parameters(Request(coerced, actor))
    except Fallback as reason:
        return f"Compiles, but these arguments or this role go to the executor: {reason}\n\nSQL:\n{plan.sql}"
    options = "ANALYZE, BUFFERS, " if analyze else ""
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(f"EXPLAIN ({options}VERBOSE) {plan.sql}", tuple(parameters))).all()
    return "\n".join(
        [
            "Plan (compiled, one SQL statement):",
            *(f"  {line}" for line in plan.outline),
            "",
            "SQL:",
            plan.sql,
            "",
            f"Parameters: {parameters!r}",
            "",
            "EXPLAIN:",
            *(row[0] for row in rows),
        ]
    )
