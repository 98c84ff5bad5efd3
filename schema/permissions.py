"""Who may run each root operation: one matrix, declared on every field, mutation and subscription.

`allow("Query.customer")` is the permission class of that operation; admins pass every check.
The README's permission table is this matrix (a test compares them), and a test walks the
schema so that no operation goes without one. Services never check roles. The classes live in
schema/ so that the types' own fields (a customer's history) can declare them too.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.permission import BasePermission

from app.auth import Actor

STAFF = ("agent", "supervisor")
SUPERVISOR = ("supervisor",)
ADMIN = ()  # admins only
EVERYONE = ("agent", "supervisor", "integrator")
# Integrators feed data in and look up what they hold a key for; they neither browse nor maintain.
FEED = ("agent", "supervisor", "integrator")
INGEST = ("integrator", "supervisor")

# Operation → the roles allowed besides admin. Agents work customers and cases; supervisors also
# maintain the data (merges, archiving, erasure, rules); admins administer users and tokens.
MATRIX: dict[str, tuple[str, ...]] = {
    "Query.node": EVERYONE,  # and then each type as its own getter (NODE_READS)
    "Query.me": EVERYONE,
    "Query.customer": STAFF,
    "Query.customerByNumber": FEED,
    "Query.customers": STAFF,
    "Query.customerSearch": STAFF,
    "Query.caseSearch": STAFF,
    "Query.searchScreens": STAFF,
    "Query.searchScreen": STAFF,
    "Query.case": STAFF,
    "Query.caseByReference": FEED,
    "Query.cases": STAFF,
    "Query.contact": STAFF,
    "Query.recognitionRules": SUPERVISOR,
    "Query.promotionRules": SUPERVISOR,
    "Query.routingRules": SUPERVISOR,
    "Query.noMatchPolicies": SUPERVISOR,
    "Query.recognitionPreview": INGEST,
    "Query.customerDuplicates": STAFF,
    "Query.customerMerge": STAFF,
    "Query.customerExport": SUPERVISOR,
    "Query.archiveRules": SUPERVISOR,
    "Query.archiveRulePreview": SUPERVISOR,
    "Query.auditEvents": STAFF,
    "Query.users": STAFF,  # agents pick assignees
    "Query.tokens": ADMIN,
    "Query.pools": STAFF,  # the queues agents work from
    "Query.myPools": STAFF,
    "Query.myCases": STAFF,
    "Query.coveredCases": STAFF,
    "Query.poolCases": STAFF,  # an agent: of a pool they serve
    "Query.absences": STAFF,
    "Query.messageTemplates": SUPERVISOR,  # who is away and who covers is what colleagues plan around
    "Query.mailboxes": ADMIN,
    "Query.mailbox": ADMIN,
    "Query.replyTemplates": STAFF,  # agents answer with them
    "Query.replyPreview": STAFF,
    "Query.task": STAFF,
    "Query.myTasks": STAFF,
    "Query.tasks": SUPERVISOR,  # everyone's tasks: the team's follow-ups
    "Mutation.customerCreate": FEED,
    "Mutation.customerUpdate": STAFF,
    "Mutation.customerIdentifierAdd": STAFF,
    "Mutation.customerIdentifierRemove": STAFF,
    "Mutation.caseCreate": STAFF,
    "Mutation.caseUpdate": STAFF,
    "Mutation.contactCreate": FEED,
    "Mutation.contactIngest": INGEST,
    "Mutation.contactIngestBatch": INGEST,
    "Mutation.recognitionRuleCreate": SUPERVISOR,
    "Mutation.recognitionRuleUpdate": SUPERVISOR,
    "Mutation.recognitionRuleDelete": SUPERVISOR,
    "Mutation.recognitionRulesReorder": SUPERVISOR,
    "Mutation.promotionRuleCreate": SUPERVISOR,
    "Mutation.promotionRuleUpdate": SUPERVISOR,
    "Mutation.promotionRuleDelete": SUPERVISOR,
    "Mutation.promotionRulesReorder": SUPERVISOR,
    "Mutation.routingRuleCreate": SUPERVISOR,
    "Mutation.routingRuleUpdate": SUPERVISOR,
    "Mutation.routingRuleDelete": SUPERVISOR,
    "Mutation.routingRulesReorder": SUPERVISOR,
    "Mutation.noMatchPolicySet": SUPERVISOR,
    "Mutation.contactAssociate": STAFF,
    "Mutation.contactMove": STAFF,
    "Mutation.caseCreateFromContact": STAFF,
    "Mutation.caseClose": STAFF,
    "Mutation.caseReopen": STAFF,
    "Mutation.caseMove": STAFF,
    "Mutation.caseCustomerLink": STAFF,
    "Mutation.caseCustomerUnlink": STAFF,
    "Mutation.caseMerge": SUPERVISOR,
    "Mutation.caseArchive": SUPERVISOR,
    "Mutation.caseRestore": SUPERVISOR,
    "Mutation.customerMerge": SUPERVISOR,
    "Mutation.customerMergeUndo": SUPERVISOR,
    "Mutation.customerArchive": SUPERVISOR,
    "Mutation.customerRestore": SUPERVISOR,
    "Mutation.customerErase": SUPERVISOR,
    "Mutation.archiveRuleCreate": SUPERVISOR,
    "Mutation.archiveRuleDelete": SUPERVISOR,
    "Mutation.userCreate": ADMIN,
    "Mutation.userUpdate": ADMIN,
    "Mutation.userDeactivate": ADMIN,
    "Mutation.tokenCreate": ADMIN,
    "Mutation.tokenRevoke": ADMIN,
    "Mutation.poolCreate": ADMIN,
    "Mutation.poolUpdate": ADMIN,
    "Mutation.poolDelete": ADMIN,
    "Mutation.mailboxCreate": ADMIN,
    "Mutation.mailboxUpdate": ADMIN,
    "Mutation.mailboxDelete": ADMIN,
    "Mutation.caseReply": STAFF,
    "Mutation.replyTemplateCreate": SUPERVISOR,
    "Mutation.replyTemplateUpdate": SUPERVISOR,
    "Mutation.replyTemplateDelete": SUPERVISOR,
    "Mutation.userSignatureSet": STAFF,  # an agent their own, a supervisor anyone's (the service's rule)
    "Mutation.poolMemberSet": SUPERVISOR,
    "Mutation.poolMemberRemove": SUPERVISOR,
    "Mutation.caseNext": STAFF,
    "Mutation.caseRelease": STAFF,  # an agent: their own case
    "Mutation.caseTransfer": STAFF,  # an agent: their own case or a waiting one
    "Mutation.casesReassign": SUPERVISOR,
    "Mutation.absenceRecord": STAFF,  # an agent: their own
    "Mutation.absenceEnd": STAFF,  # an agent: their own
    "Mutation.messageTemplateSet": SUPERVISOR,
    "Mutation.messageTemplateReset": SUPERVISOR,
    # Tasks: an agent changes those assigned to them or that they created; a supervisor any.
    "Mutation.taskCreate": STAFF,
    "Mutation.taskUpdate": STAFF,
    "Mutation.taskComplete": STAFF,
    "Mutation.taskReopen": STAFF,
    "Mutation.taskCancel": STAFF,
    "Mutation.taskDelete": STAFF,
    # Forms: read by everyone who fills one in, kept by supervisors.
    "Query.reasonCodes": EVERYONE,
    "Query.customerForm": EVERYONE,
    "Query.caseTemplates": EVERYONE,
    "Query.caseTemplate": EVERYONE,
    "Query.dictionaries": EVERYONE,
    "Mutation.reasonCodeCreate": SUPERVISOR,
    "Mutation.reasonCodeUpdate": SUPERVISOR,
    "Mutation.reasonCodeDelete": SUPERVISOR,
    "Mutation.dictionaryCreate": SUPERVISOR,
    "Mutation.dictionaryUpdate": SUPERVISOR,
    "Mutation.dictionaryDelete": SUPERVISOR,
    "Mutation.formFieldCreate": SUPERVISOR,
    "Mutation.formFieldUpdate": SUPERVISOR,
    "Mutation.formFieldDelete": SUPERVISOR,
    "Mutation.searchScreenCreate": SUPERVISOR,
    "Mutation.searchScreenUpdate": SUPERVISOR,
    "Mutation.searchScreenDelete": SUPERVISOR,
    "Mutation.caseTemplateCreate": SUPERVISOR,
    "Mutation.caseTemplateUpdate": SUPERVISOR,
    "Mutation.caseTemplateDelete": SUPERVISOR,
    # Regions, calendars and turnaround times: configuration the supervisors keep.
    "Query.regions": STAFF,
    "Query.tatPolicies": STAFF,
    "Mutation.regionCreate": SUPERVISOR,
    "Mutation.regionUpdate": SUPERVISOR,
    "Mutation.regionDelete": SUPERVISOR,
    "Mutation.tatPolicyCreate": SUPERVISOR,
    "Mutation.tatPolicyUpdate": SUPERVISOR,
    "Mutation.tatPolicyDelete": SUPERVISOR,
    # Groups, workflows and user modes (who opens and who resolves a workflow's cases).
    "Query.userGroups": STAFF,
    "Query.workflows": STAFF,
    "Mutation.userGroupCreate": SUPERVISOR,
    "Mutation.userGroupUpdate": SUPERVISOR,
    "Mutation.userGroupDelete": SUPERVISOR,
    "Mutation.workflowCreate": SUPERVISOR,
    "Mutation.workflowUpdate": SUPERVISOR,
    "Mutation.workflowDelete": SUPERVISOR,
    "Mutation.workflowModeSet": SUPERVISOR,
    # Subscriptions as the queries they mirror.
    "Subscription.customerUpdated": STAFF,
    "Subscription.caseUpdated": STAFF,
    "Subscription.contactReceived": STAFF,
    "Subscription.contactReceived(all)": SUPERVISOR,  # neither customerId nor caseId: every contact
    "Subscription.queueUpdated": STAFF,  # an agent: a pool they serve
    "Subscription.myWorkUpdated": STAFF,
    "Subscription.taskReminder": STAFF,  # the caller's own reminders only
    "Subscription.slaEvents": STAFF,  # supervisors every event, an agent their cases' and groups'
    # Histories are browsing: an integrator that looked a customer or case up reads that record only.
    "Customer.cases": STAFF,
    "Customer.contacts": STAFF,
    "Customer.openCases": STAFF,
    "Customer.latestContact": STAFF,
    "Case.contacts": STAFF,
    "Customer.tasks": STAFF,
    "Case.tasks": STAFF,
}

# node(id) reads an object as the getter of its type would.
NODE_READS = {
    "Customer": "Query.customer",
    "Case": "Query.case",
    "Contact": "Query.contact",
    "User": "Query.users",
    "Task": "Query.task",
    "CaseTemplate": "Query.caseTemplate",
    "Dictionary": "Query.dictionaries",
}


def permitted(actor: Actor | None, operation: str) -> bool:
    return actor is not None and actor.has_role(*MATRIX[operation])


def refusal(operation: str) -> str:
    return f"requires role {' or '.join(MATRIX[operation] or ('admin',))}"


def forbidden(operation: str) -> GraphQLError:
    """The refusal of an operation, for a check made inside a resolver (node)."""
    return GraphQLError(refusal(operation), extensions={"code": "FORBIDDEN"})


@cache
def allow(operation: str) -> type[BasePermission]:
    """The permission class of one operation of the matrix."""
    if operation not in MATRIX:
        raise KeyError(f"{operation} is not in the permission matrix")

    class Allowed(BasePermission):
        message = refusal(operation)
        error_extensions = {"code": "FORBIDDEN"}

        def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
            return permitted(info.context.actor, operation)

    Allowed.operation = operation
    Allowed.__name__ = f"Allow_{operation.replace('.', '_').replace('(', '_').rstrip(')')}"
    return Allowed


class AllContacts(BasePermission):
    """contactReceived without a filter streams every contact: the supervisors' view."""

    operation = "Subscription.contactReceived(all)"
    message = refusal(operation)
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        filtered = kwargs.get("customer_id") is not None or kwargs.get("case_id") is not None
        return filtered or permitted(info.context.actor, self.operation)
