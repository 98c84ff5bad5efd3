"""The one schema: root types merged from each domain, with the protective extensions."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from app.errors import UserError as AppUserError
from app.settings import Settings, load_settings
from resolvers.root import MUTATIONS, QUERIES
from resolvers.subscriptions import Subscription
from schema.auth import User
from schema.cases import Case
from schema.contacts import Contact
from schema.customers import Customer, CustomerIdentifier


def _should_mask(error: GraphQLError) -> bool:
    """Mask only the unexpected: errors raised on purpose (input refused while resolving a
    query, a permission denied, a GraphQL error) are the client's to read."""
    original = error.original_error
    return original is not None and not isinstance(original, AppUserError | GraphQLError)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or load_settings()
    # The limit rules are built once: the validation cache is keyed by the rule classes, and
    # a limiter constructed per request would make a new class each time and never hit.
    limit_rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    # Factories: a fresh extension per request (the parser and validation caches are module-level).
    extensions = [
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    if not settings.debug:
        extensions.append(lambda: MaskErrors(should_mask_error=_should_mask))
    return strawberry.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        subscription=Subscription,
        types=[Customer, Case, Contact, CustomerIdentifier, User],
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
    )
