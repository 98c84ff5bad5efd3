"""The root fields, and the domains' Query and Mutation classes merged into the one schema."""

from __future__ import annotations

import strawberry

from resolvers.archive import ArchiveMutation, ArchiveQuery, CaseArchiveMutation
from resolvers.audit import AuditQuery
from resolvers.auth import AuthMutation, AuthQuery
from resolvers.cases import CaseLifecycleMutation, CaseMutation, CaseQuery
from resolvers.contacts import ContactFixMutation, ContactMutation, ContactQuery
from resolvers.customers import CustomerMergeMutation, CustomerMergeQuery, CustomerMutation, CustomerQuery
from resolvers.forms import FormMutation, FormQuery, load_case_template, load_dictionary
from resolvers.mail import CaseReplyMutation, MailMutation, MailQuery
from resolvers.messages import MessageMutation, MessageQuery
from resolvers.queues import PoolMutation, PoolQuery, WorkMutation, WorkQuery, WorkSubscription
from resolvers.reasons import ReasonCodeMutation, ReasonCodeQuery
from resolvers.recognition import RecognitionMutation, RecognitionQuery
from resolvers.replies import ReplyMutation, ReplyQuery
from resolvers.search import SearchMutation, SearchQuery
from resolvers.sla import SlaMutation, SlaQuery, SlaSubscription
from resolvers.subscriptions import Subscription
from resolvers.tasks import TaskMutation, TaskQuery, TaskSubscription
from resolvers.workflows import WorkflowMutation, WorkflowQuery
from schema.auth import User
from schema.ids import from_global_id
from schema.node import Node, load_case, load_contact, load_customer, load_user
from schema.permissions import NODE_READS, allow, forbidden, permitted

_NODE_LOADERS = {
    "Customer": load_customer,
    "Case": load_case,
    "Contact": load_contact,
    "User": load_user,
    "Task": lambda info, task_id: info.context.loaders.task.load(task_id),
    "CaseTemplate": load_case_template,
    "Dictionary": load_dictionary,
}


@strawberry.type
class RootQuery:
    @strawberry.field(permission_classes=[allow("Query.node")], description="Any object by its global id.")
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        decoded = from_global_id(id)
        if decoded is None or decoded[0] not in _NODE_LOADERS:
            return None
        # Reading by global id is no way around a type's own getter (integrators do not browse).
        if not permitted(info.context.actor, NODE_READS[decoded[0]]):
            raise forbidden(NODE_READS[decoded[0]])
        return await _NODE_LOADERS[decoded[0]](info, decoded[1])

    @strawberry.field(permission_classes=[allow("Query.me")], description="The user the request's token belongs to.")
    async def me(self, info: strawberry.Info) -> User | None:
        actor = info.context.actor
        return await load_user(info, actor.user_id if actor else None)


# The order of the classes is the order of the fields in the exported schema (schema/schema.graphql).
QUERIES = (
    RootQuery,
    CustomerQuery,
    SearchQuery,
    CaseQuery,
    ContactQuery,
    RecognitionQuery,
    CustomerMergeQuery,
    ArchiveQuery,
    AuditQuery,
    AuthQuery,
    PoolQuery,
    WorkQuery,
    MessageQuery,
    MailQuery,
    ReplyQuery,
    TaskQuery,
    ReasonCodeQuery,
    FormQuery,
    SlaQuery,
    WorkflowQuery,
)
MUTATIONS = (
    CustomerMutation,
    CaseMutation,
    ContactMutation,
    RecognitionMutation,
    ContactFixMutation,
    CaseLifecycleMutation,
    CaseArchiveMutation,
    CustomerMergeMutation,
    ArchiveMutation,
    AuthMutation,
    PoolMutation,
    WorkMutation,
    MessageMutation,
    MailMutation,
    CaseReplyMutation,
    ReplyMutation,
    TaskMutation,
    ReasonCodeMutation,
    FormMutation,
    SlaMutation,
    WorkflowMutation,
    SearchMutation,
)
SUBSCRIPTIONS = (Subscription, WorkSubscription, TaskSubscription, SlaSubscription)
