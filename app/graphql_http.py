"""GraphQL over HTTP, as the GraphQL Foundation's spec and Apollo's clients expect it.

- GET (queries only; a mutation is 405) and POST with `application/json`.
- The answer is `application/graphql-response+json` when the client accepts it, else
  `application/json`. A request that never reaches execution (a syntax, validation or variable
  error) is 400 in the first and 200 in the second, as the spec recommends; a malformed request
  (bad JSON, no query, wrong parameter types) is 400 in both.
- Every answer, refusals included, is a GraphQL response body with `extensions.code` on its
  errors; a missing or invalid token is 401 with `WWW-Authenticate: Bearer`.
- Automatic persisted queries (`extensions.persistedQuery`), by GET or POST.
- Subscriptions are refused with a pointer to the WebSocket endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry import Schema
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from app.auth import Actor, bearer_token
from app.persisted_queries import PersistedQueries, sha256_hex
from resolvers.context import Context

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
PATH_HEADER = "casegraph-path"  # in a response: which path answered; in a request: "executor" forces it
_QUERY_ONLY = frozenset({OperationType.QUERY})
_QUERY_OR_MUTATION = frozenset({OperationType.QUERY, OperationType.MUTATION})


class RequestRefused(Exception):
    """A request answered with an error body and an HTTP status, before or instead of execution."""

    def __init__(self, status: int | None, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status  # None: a GraphQL request error, whose status depends on the media type
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclass(frozen=True)
class GraphQLParams:
    query: str | None
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None


def response_media_type(accept: str | None) -> str | None:
    """The media type to answer with, from the Accept header; None when nothing we serve is acceptable."""
    if not accept or not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    for position, media_range in enumerate(accept.split(",")):
        kind, *params = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = kind.lower()
        if quality <= 0:
            continue
        if kind == GRAPHQL_RESPONSE_JSON:
            offered = GRAPHQL_RESPONSE_JSON
        elif kind in (JSON, "application/*", "*/*"):
            offered = JSON
        else:
            continue
        candidate = (quality, -position, offered)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def _json_object(raw: Any, name: str) -> dict[str, Any] | None:
    if isinstance(raw, str):
        if not raw:
            return None
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RequestRefused(400, f"`{name}` is not valid JSON", "BAD_REQUEST") from None
    if raw is not None and not isinstance(raw, dict):
        raise RequestRefused(400, f"`{name}` must be an object or null", "BAD_REQUEST")
    return raw


def _params(data: dict[str, Any]) -> GraphQLParams:
    query = data.get("query")
    operation_name = data.get("operationName")
    for name, value in (("query", query), ("operationName", operation_name)):
        if value is not None and not isinstance(value, str):
            raise RequestRefused(400, f"`{name}` must be a string or null", "BAD_REQUEST")
    return GraphQLParams(
        query=query or None,
        operation_name=operation_name or None,
        variables=_json_object(data.get("variables"), "variables"),
        extensions=_json_object(data.get("extensions"), "extensions"),
    )


async def read_params(request: Request) -> GraphQLParams:
    if request.method == "GET":
        return _params(dict(request.query_params))
    content_type = request.headers.get("content-type", "")
    media_type, *options = (part.strip().lower() for part in content_type.split(";"))
    charset = next((value for name, _, value in (o.partition("=") for o in options) if name == "charset"), "utf-8")
    if media_type != JSON or charset.strip('"') not in ("utf-8", "utf8"):
        raise RequestRefused(415, "Send the request as application/json (UTF-8)", "UNSUPPORTED_MEDIA_TYPE")
    body = await request.body()
    if not body.strip():
        raise RequestRefused(400, "The request body is empty", "BAD_REQUEST")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestRefused(400, "The request body is not valid JSON", "BAD_REQUEST") from None
    if not isinstance(data, dict):
        raise RequestRefused(400, "The request body must be a JSON object (batching is not supported)", "BAD_REQUEST")
    return _params(data)


async def resolve_document(params: GraphQLParams, store: PersistedQueries) -> tuple[str, str | None]:
    """The document to run, and the hash to register it under once it proves valid (or None)."""
    persisted = (params.extensions or {}).get("persistedQuery")
    if persisted is None:
        if params.query is None:
            raise RequestRefused(400, "No GraphQL query found in the request", "BAD_REQUEST")
        return params.query, None
    sha256 = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if not isinstance(persisted, dict) or persisted.get("version") != 1 or not isinstance(sha256, str):
        raise RequestRefused(400, "Unsupported persistedQuery extension (version 1 with a sha256Hash)", "BAD_REQUEST")
    sha256 = sha256.lower()
    if params.query is None:
        document = await store.get(sha256)
        if document is None:
            # Apollo's clients recognise this exact message and send the document next.
            raise RequestRefused(None, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        return document, None
    if sha256_hex(params.query) != sha256:
        raise RequestRefused(400, "The sha256Hash does not match the query", "PERSISTED_QUERY_HASH_MISMATCH")
    return params.query, sha256


def _is_request_error(result: ExecutionResult) -> bool:
    """Refused before execution (syntax, validation, variables): errors that point at no field."""
    return result.data is None and bool(result.errors) and all(error.path is None for error in result.errors)


def _request_error_status(media_type: str | None) -> int:
    # The spec's watershed: the new media type says "no data" with 400, legacy JSON with 200.
    return 400 if media_type == GRAPHQL_RESPONSE_JSON else 200


def _error(message: str, code: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


class GraphQLHTTP:
    """The ASGI endpoint for GraphQL over HTTP; `render_ide` answers a browser's plain GET."""

    def __init__(
        self,
        *,
        schema: Schema,
        authenticate: Callable[[str | None], Awaitable[Actor | None]],
        make_context: Callable[[Actor], Context],
        compiled_read: Callable[[str, str | None, dict[str, Any] | None, Actor], Awaitable[bytes | None]] | None,
        persisted_queries: Callable[[], PersistedQueries],
        render_ide: Callable[[Request], str],
        should_mask: Callable[[GraphQLError], bool] | None,
    ) -> None:
        self.schema = schema
        self.authenticate = authenticate
        self.make_context = make_context
        self.compiled_read = compiled_read
        self.persisted_queries = persisted_queries
        self.render_ide = render_ide
        self.should_mask = should_mask

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        if request.method == "GET" and not request.query_params and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(self.render_ide(request))
        media_type = response_media_type(request.headers.get("accept"))
        try:
            if request.method not in ("GET", "POST"):
                raise RequestRefused(
                    405, "GraphQL is served over GET and POST", "METHOD_NOT_ALLOWED", {"Allow": "GET, POST"}
                )
            if media_type is None:
                raise RequestRefused(406, f"Accept {GRAPHQL_RESPONSE_JSON} or {JSON}", "NOT_ACCEPTABLE")
            token = bearer_token(request.headers.get("authorization"))
            actor = await self.authenticate(token)
            if actor is None:
                challenge = 'Bearer realm="casegraph"' + (', error="invalid_token"' if token else "")
                raise RequestRefused(
                    401, "A valid bearer token is required", "UNAUTHENTICATED", {"WWW-Authenticate": challenge}
                )
            # The compiled path answers what it can; a client may ask for the executor (to compare).
            compile_reads = request.headers.get(PATH_HEADER, "").lower() != "executor"
            params = await read_params(request)
            store = self.persisted_queries()
            document, register_as = await resolve_document(params, store)
            if compile_reads and self.compiled_read is not None:
                # A document already answered by the compiled path skips strawberry altogether.
                try:
                    data = await self.compiled_read(document, params.operation_name, params.variables, actor)
                except Exception:
                    # Never a bare 500: the full pipeline runs, meets the fault again and answers it masked.
                    log.exception("the compiled read path failed; the executor answers")
                    data = None
                if data is not None:
                    if register_as:
                        await store.put(register_as, document)
                    return self._respond_data(data, media_type)
            context = self.make_context(actor)
            context.compile_reads = compile_reads
            result = await self._execute(request, context, document, params)
        except RequestRefused as refused:
            status = refused.status or _request_error_status(media_type)
            return self._respond(
                {"errors": [_error(refused.message, refused.code)]}, status, media_type, refused.headers
            )

        if _is_request_error(result):
            body: dict[str, Any] = {"errors": self._errors(result)}
            status = _request_error_status(media_type)
        else:
            body = {"data": result.data}
            if result.errors:
                body["errors"] = self._errors(result)
            status = 200
            if register_as:
                await store.put(register_as, document)
        if result.extensions:
            body["extensions"] = result.extensions
        return self._respond(body, status, media_type, {PATH_HEADER: context.answered_by})

    def _errors(self, result: ExecutionResult) -> list[dict[str, Any]]:
        # MaskErrors covers errors from resolvers; an exception escaping an extension before
        # execution bypasses it, so the transport masks too.
        return [
            {"message": "Unexpected error.", **({"path": error.path} if error.path else {})}
            if self.should_mask and self.should_mask(error)
            else error.formatted
            for error in result.errors
        ]

    async def _execute(
        self, request: Request, context: Context, document: str, params: GraphQLParams
    ) -> ExecutionResult:
        try:
            return await self.schema.execute(
                document,
                variable_values=params.variables,
                context_value=context,
                operation_name=params.operation_name,
                allowed_operation_types=_QUERY_ONLY if request.method == "GET" else _QUERY_OR_MUTATION,
                operation_extensions=params.extensions,
            )
        except InvalidOperationTypeError as refused:
            if refused.operation_type is OperationType.SUBSCRIPTION:
                raise RequestRefused(
                    400,
                    "Subscriptions are served over WebSocket (graphql-transport-ws) at this URL, not over HTTP",
                    "SUBSCRIPTION_OVER_HTTP",
                ) from None
            raise RequestRefused(
                405, "Mutations must be sent with POST", "METHOD_NOT_ALLOWED", {"Allow": "POST"}
            ) from None
        except CannotGetOperationTypeError as refused:
            raise RequestRefused(400, refused.as_http_error_reason(), "OPERATION_NOT_FOUND") from None
        except MissingQueryError:
            raise RequestRefused(400, "No GraphQL query found in the request", "BAD_REQUEST") from None

    @staticmethod
    def _respond_data(data: bytes, media_type: str | None) -> Response:
        """The compiled path's answer: its JSON text wrapped, never decoded."""
        return Response(
            b'{"data":' + data + b"}",
            headers={PATH_HEADER: "compiled"},
            media_type=f"{media_type or JSON}; charset=utf-8",
        )

    @staticmethod
    def _respond(
        body: dict[str, Any], status: int, media_type: str | None, headers: dict[str, str] | None = None
    ) -> Response:
        return Response(
            orjson.dumps(body),
            status_code=status,
            headers=headers,
            media_type=f"{media_type or JSON}; charset=utf-8",
        )
