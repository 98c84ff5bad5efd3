"""Query cost: how many fields a query may resolve, page sizes multiplied through the nesting.

Depth alone does not bound the work: `customers(first: 100) { cases(first: 100) { contacts(first:
100) { id } } } }` is shallow and resolves a million fields. Each field costs as many times as
there may be parents to resolve it for; a connection's `first` multiplies that for everything
below it. Computed with the variables, before execution, so a refused query touches nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension

from app.pagination import MAX_PAGE, page_size


def query_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict[str, Any]
) -> int:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root = schema.get_root_type(operation.operation)
    return _cost(operation.selection_set, root, 1, _Walk(schema, fragments, variables))


class _Walk:
    def __init__(
        self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables


def _cost(selection_set: SelectionSetNode, parent: GraphQLNamedType | None, parents: int, walk: _Walk) -> int:
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            total += parents
            field = getattr(parent, "fields", {}).get(selection.name.value)
            if field is not None and selection.selection_set is not None:
                below = parents * _page(selection, field, walk.variables)
                total += _cost(selection.selection_set, get_named_type(field.type), below, walk)
        else:
            for fragment_type, fragment_selections in _fragment(selection, parent, walk):
                total += _cost(fragment_selections, fragment_type, parents, walk)
    return total


def _fragment(
    selection: Any, parent: GraphQLNamedType | None, walk: _Walk
) -> Iterator[tuple[GraphQLNamedType | None, SelectionSetNode]]:
    if isinstance(selection, InlineFragmentNode):
        condition = selection.type_condition
        yield (walk.schema.get_type(condition.name.value) if condition else parent), selection.selection_set
    elif isinstance(selection, FragmentSpreadNode) and (fragment := walk.fragments.get(selection.name.value)):
        yield walk.schema.get_type(fragment.type_condition.name.value), fragment.selection_set


def _page(node: FieldNode, field: Any, variables: dict[str, Any]) -> int:
    """How many objects a connection field may return: its `first`, or the default page."""
    if "first" not in field.args:
        return 1
    first = None
    for argument in node.arguments or ():
        if argument.name.value != "first":
            continue
        if isinstance(argument.value, IntValueNode):
            first = int(argument.value.value)
        elif isinstance(argument.value, VariableNode):
            first = variables.get(argument.value.name.value)
    if not isinstance(first, int) or isinstance(first, bool):
        return page_size(None)
    return max(1, min(first, MAX_PAGE))  # out-of-range pages are refused by the resolver anyway


def cost_refusal(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: dict[str, Any], max_cost: int
) -> GraphQLError | None:
    """The error refusing an operation over the cost limit, or None."""
    if not isinstance(get_operation_ast(document, operation_name), OperationDefinitionNode):
        return None
    cost = query_cost(schema, document, operation_name, variables)
    if cost <= max_cost:
        return None
    return GraphQLError(
        f"This query may resolve {cost} fields, over the limit of {max_cost}: ask for smaller pages or nest less",
        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": max_cost},
    )


class QueryCostLimiter(SchemaExtension):
    def __init__(self, *, max_cost: int) -> None:
        super().__init__()
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            error = cost_refusal(
                context.schema._schema,
                context.graphql_document,
                context.operation_name,
                context.variables or {},
                self.max_cost,
            )
            if error is not None:
                context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield
