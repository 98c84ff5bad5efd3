"""The one schema: root types merged from each domain, with the protective extensions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    Visitor,
    visit,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from app.errors import UserError as AppUserError
from app.limits import unstorable_character
from app.settings import Settings, load_settings
from resolvers.compiled import CompiledReads
from resolvers.query_cost import QueryCostLimiter
from resolvers.root import MUTATIONS, QUERIES, SUBSCRIPTIONS
from resolvers.subscriptions import EventIds, SharedEventExecution
from schema.auth import User
from schema.cases import Case
from schema.contacts import Contact
from schema.customers import Customer, CustomerIdentifier
from schema.scalars import SCALAR_OVERRIDES


def should_mask_error(error: GraphQLError) -> bool:
    """Mask only the unexpected: errors raised on purpose (input refused while resolving a
    query, a permission denied, a GraphQL error) are the client's to read."""
    original = error.original_error
    return original is not None and not isinstance(original, AppUserError | GraphQLError)


def _standing_down_on_unknown_fragments(rule: type[ValidationRule]) -> type[ValidationRule]:
    """The depth limiter fails with a KeyError on a spread of an undefined fragment; the spec's
    KnownFragmentNames rule reports that document, so the limiter has nothing to add."""

    class Rule(rule):
        def __init__(self, context: ValidationContext) -> None:
            try:
                super().__init__(context)
            except KeyError:
                ValidationRule.__init__(self, context)

    return Rule


class OperationNameRequired(SchemaExtension):
    """A document with several operations must name the one to run (GraphQL spec,
    GetOperation); strawberry would otherwise run the first."""

    def on_validate(self) -> Iterator[None]:
        # Before the yield: strawberry reads the validation errors inside the hook's span.
        # Listed after ValidationCache, whose errors are already set here.
        context = self.execution_context
        document = context.graphql_document
        unnamed = context._provided_operation_name is None  # what the client sent; strawberry has no public copy
        if unnamed and document and sum(isinstance(d, OperationDefinitionNode) for d in document.definitions) > 1:
            error = GraphQLError("The document holds several operations: say which to run with operationName")
            context.pre_execution_errors = [*(context.pre_execution_errors or []), error]
        yield


def unstorable_refusal(document: DocumentNode | None, variables: dict[str, Any] | None) -> GraphQLError | None:
    """No NUL character or lone surrogate, in the variables or in the document's literals, gets past
    the door: PostgreSQL's text cannot hold them. One check for every argument."""
    where = unstorable_character(variables or {})
    if where is not None:
        where = f"variable ${where}"
    elif document is not None:
        where = "a string in the document" if _unstorable_literal(document) else None
    if where is None:
        return None
    return GraphQLError(
        f"Strings must not contain NUL characters or lone surrogates ({where})", extensions={"code": "BAD_USER_INPUT"}
    )


# The parser cache hands out one document object per query text: its literals are checked once.
# The documents are kept, so that an id is never reused while it is a key.
_LITERALS_CHECKED: dict[int, tuple[DocumentNode, bool]] = {}


def _unstorable_literal(document: DocumentNode) -> bool:
    known = _LITERALS_CHECKED.get(id(document))
    if known is not None and known[0] is document:
        return known[1]
    found = unstorable_character([node.value for node in _string_literals(document)]) is not None
    if len(_LITERALS_CHECKED) >= 256:
        _LITERALS_CHECKED.pop(next(iter(_LITERALS_CHECKED)))
    _LITERALS_CHECKED[id(document)] = (document, found)
    return found


class UnstorableCharacters(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        error = unstorable_refusal(context.graphql_document, context.variables)
        if error is not None:
            context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield


def _string_literals(document: DocumentNode) -> list[StringValueNode]:
    found: list[StringValueNode] = []

    class Collect(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: object) -> None:
            found.append(node)

    visit(document, Collect())
    return found


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or load_settings()
    # The limit rules are built once: the validation cache is keyed by the rule classes, and
    # a limiter constructed per request would make a new class each time and never hit.
    limit_rules = [
        *map(
            _standing_down_on_unknown_fragments, QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules
        ),
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    # Factories: a fresh extension per request (the parser and validation caches are module-level).
    extensions = [
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        OperationNameRequired,
        UnstorableCharacters,
        lambda: QueryCostLimiter(max_cost=settings.max_query_cost),
        EventIds,
        # Last of the checks: only a query every check above let through is compiled.
        lambda: CompiledReads(max_cost=settings.max_query_cost),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    if not settings.debug:
        extensions.append(lambda: MaskErrors(should_mask_error=should_mask_error))
    return strawberry.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        subscription=merge_types("Subscription", SUBSCRIPTIONS),
        types=[Customer, Case, Contact, CustomerIdentifier, User],
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
        scalar_overrides=SCALAR_OVERRIDES,
        execution_context_class=SharedEventExecution,
    )
