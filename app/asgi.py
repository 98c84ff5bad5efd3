"""The ASGI application: GraphQL over HTTP and WebSocket, GraphiQL, health checks."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from app import health
from app.auth import authenticate, bearer_token
from app.graphiql import ASSETS_PATH, graphiql_assets_app, graphiql_html
from app.runtime import Runtime, create_runtime
from app.settings import Settings, get_settings
from resolvers.context import Context
from resolvers.loaders import Loaders
from resolvers.schema import build_schema


class CasegraphGraphQL(GraphQL):
    """Strawberry's ASGI view with token authentication and the offline GraphiQL page."""

    def __init__(self, runtime_holder: dict[str, Runtime], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime_holder = runtime_holder

    @property
    def runtime(self) -> Runtime:
        return self.runtime_holder["runtime"]

    async def get_context(self, request: Any, response: Any = None) -> Context:
        context = Context(runtime=self.runtime, actor=None, loaders=Loaders(self.runtime))
        if request.scope["type"] == "http":
            context.actor = await self._authenticate(bearer_token(request.headers.get("authorization")))
        return context

    async def execute_operation(self, *, context: Context, **kwargs: Any):
        # Checked here rather than in get_context so the GraphiQL page itself loads without a token.
        if context.actor is None:
            raise HTTPException(401, "A valid bearer token is required")
        return await super().execute_operation(context=context, **kwargs)

    async def on_ws_connect(self, context: Context) -> None:
        params = context.connection_params or {}
        token = params.get("token") or bearer_token(params.get("Authorization") or params.get("authorization"))
        context.actor = await self._authenticate(token)
        if context.actor is None:
            raise ConnectionRejectionError({"message": "A valid token is required in connection_params"})

    async def _authenticate(self, token: str | None):
        async with self.runtime.reading() as session:
            return await authenticate(session, token)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_html(endpoint=request.url.path))


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await PlainTextResponse("Request body too large", 413)(scope, receive, send)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await PlainTextResponse("Request body too large", 413)(scope, receive, send)


class _TooLarge(Exception):
    pass


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

    graphql = CasegraphGraphQL(
        holder,
        schema=build_schema(settings),
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        keep_alive=True,
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await health.readiness(holder["runtime"])
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503)

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Mount(ASSETS_PATH, app=graphiql_assets_app(), name="graphiql-assets"),
        ],
        lifespan=lifespan,
    )
    return BodyLimit(app, settings.max_body_bytes)
