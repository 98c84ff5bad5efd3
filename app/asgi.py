"""The ASGI application: GraphQL over HTTP and WebSocket, GraphiQL, health checks."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import health
from app.auth import NOT_CACHED, STAFF_ROLES, Actor, RevocationFollower, authenticate, bearer_token, cached_actor
from app.graphiql import ASSETS_PATH, graphiql_assets_app, graphiql_html
from app.graphql_http import GraphQLHTTP
from app.graphql_ws import GraphQLWebSocket
from app.persisted_queries import PersistedQueries
from app.runtime import Runtime, create_runtime
from app.services.contacts import read_attachment
from app.settings import Settings, get_settings
from resolvers.compiled import answer_admitted
from resolvers.context import Context
from resolvers.schema import build_schema, should_mask_error
from schema.ids import decode_id


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is sent.

    The body is read before the app runs (GraphQL needs all of it anyway), so the refusal is
    always a clean 413, never a half-started response."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large()(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _too_large()(scope, receive, send)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal body
            if body is None:
                return await receive()  # after the body: only the disconnect is left to hear
            message, body = body, None
            return message

        await self.app(scope, replay, send)


def _too_large() -> Response:
    body = {"errors": [{"message": "Request body too large", "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]}
    return JSONResponse(body, status_code=413)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> ASGIApp:
    """The app; it owns (creates and closes) its Runtime unless one is passed in."""
    settings = settings or get_settings()
    holder: dict[str, Runtime] = {"runtime": runtime} if runtime else {}

    @asynccontextmanager
    async def lifespan(app: Starlette):
        holder["runtime"] = runtime or create_runtime(settings)
        # Everything built at start-up lives as long as the process: keep it out of the
        # collector's generations so each request's garbage is cheap to collect.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if runtime is None:
                await holder["runtime"].close()

    schema = build_schema(settings)
    persisted: dict[str, PersistedQueries] = {}

    def persisted_queries() -> PersistedQueries:
        if not persisted:
            persisted["store"] = PersistedQueries(holder["runtime"].redis, max_entries=settings.persisted_queries_max)
        return persisted["store"]

    # Each process follows the revocations published by any process, from its first token check on.
    revocations = RevocationFollower()

    async def http_actor(token: str | None) -> Actor | None:
        runtime = holder["runtime"]
        revocations.follow(runtime.event_hub)
        actor = cached_actor(token)
        if actor is NOT_CACHED:
            async with runtime.reading() as session:
                actor = await authenticate(session, token)
        return actor

    def http_context(actor: Actor) -> Context:
        return Context(runtime=holder["runtime"], actor=actor)

    async def compiled_read(
        document: str, operation_name: str | None, variables: dict | None, actor: Actor
    ) -> bytes | None:
        runtime = holder["runtime"]
        return await answer_admitted(
            schema._schema,
            document,
            operation_name,
            variables,
            actor,
            runtime.compiled_reads,
            runtime.settings.default_phone_region,
        )

    graphql_http = GraphQLHTTP(
        schema=schema,
        authenticate=http_actor,
        make_context=http_context,
        compiled_read=compiled_read,
        persisted_queries=persisted_queries,
        render_ide=lambda request: graphiql_html(endpoint=request.url.path),
        should_mask=None if settings.debug else should_mask_error,
    )
    graphql_ws = GraphQLWebSocket(holder, settings, revocations, schema=schema)

    async def attachment(request: Request) -> Response:
        """An attachment's content, for staff with a valid bearer token; always as a download."""
        runtime = holder["runtime"]
        async with runtime.reading() as session:
            actor = await authenticate(session, bearer_token(request.headers.get("authorization")))
            if actor is None:
                return JSONResponse({"error": "a valid bearer token is required"}, status_code=401)
            if not actor.has_role(*STAFF_ROLES):
                return JSONResponse({"error": "requires role agent or supervisor"}, status_code=403)
            attachment_id = decode_id(request.path_params["id"], "Attachment")
            found = None if attachment_id is None else await read_attachment(session, attachment_id=attachment_id)
        if found is None:
            return JSONResponse({"error": "attachment not found"}, status_code=404)
        row, data = found
        return Response(
            data,
            media_type=row.content_type,
            headers={
                # Never rendered on the API's origin: a file's claimed type must not make it a page there.
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.filename or 'attachment')}",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
                "Cache-Control": "private, no-store",
            },
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await health.readiness(holder["runtime"])
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)

    app = Starlette(
        routes=[
            Route("/graphql", graphql_http),
            WebSocketRoute("/graphql", graphql_ws),
            Route("/attachments/{id}", attachment),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Mount(ASSETS_PATH, app=graphiql_assets_app(), name="graphiql-assets"),
        ],
        lifespan=lifespan,
        middleware=_cors(settings),
    )
    return BodyLimit(app, settings.max_body_bytes)


def _cors(settings: Settings) -> list[Middleware]:
    """Browser apps on the listed origins may call the API (off unless CASEGRAPH_CORS_ORIGINS is set)."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            allow_credentials=True,
            max_age=600,
        )
    ]
