"""GraphQL over WebSocket (graphql-transport-ws) on strawberry's handler.

The token comes in `connection_init` (`{"token": ...}` or `{"Authorization": "Bearer ..."}`).
A refused connection is closed with a code and a reason that say why: 4403 for a missing or
invalid token, 4429 for a token holding too many open connections in this process. An admitted
connection is closed with 4403 and the reason when its token is revoked or its user deactivated
(or its role changed), whichever process made that change.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
from graphql import GraphQLError, parse
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler

from app.auth import Revocation, RevocationFollower, authenticate, bearer_token, hash_token
from app.runtime import Runtime
from app.settings import Settings
from resolvers.context import Context
from resolvers.query_cost import cost_refusal
from resolvers.schema import unstorable_refusal

TOKEN_REQUIRED = "A valid token is required in connection_params"
TOO_MANY_CONNECTIONS = "Too many open connections for this token"


class WebSocketRefused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TransportWSHandler(BaseGraphQLTransportWSHandler):
    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except WebSocketRefused as refused:
            await self.websocket.close(code=refused.code, reason=refused.reason)

    async def handle_subscribe(self, message: Any) -> None:
        # Strawberry skips the refusals the schema's extensions make before execution when it
        # runs a subscription, so an operation over the socket is checked here first.
        refusal = self.connection_acknowledged and self.view.refusal_before_running(message.get("payload"))
        if refusal:
            await self.send_message({"id": message["id"], "type": "error", "payload": [refusal.formatted]})
            return
        await super().handle_subscribe(message)

    async def handle(self) -> None:
        self.view.live.add(self)
        try:
            await super().handle()
        finally:
            self.view.live.discard(self)
            self.view.release(self.context)


class GraphQLWebSocket(GraphQL):
    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(
        self, runtime_holder: dict[str, Runtime], settings: Settings, revocations: RevocationFollower, **kwargs: Any
    ) -> None:
        super().__init__(
            graphql_ide=None,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            keep_alive=True,
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
            max_subscriptions_per_connection=settings.ws_max_subscriptions,
            allowed_origins=settings.cors_origins,
            **kwargs,
        )
        self.runtime_holder = runtime_holder
        self.max_query_cost = settings.max_query_cost
        self.max_query_tokens = settings.max_query_tokens
        self.max_connections_per_token = settings.ws_max_connections_per_token
        self.open_connections: Counter[str] = Counter()
        self.live: set[TransportWSHandler] = set()
        self.revocations = revocations
        revocations.listeners.append(self.close_revoked)

    async def get_context(self, request: Any, response: Any = None) -> Context:
        runtime = self.runtime_holder["runtime"]
        return Context(runtime=runtime, actor=None)

    async def on_ws_connect(self, context: Context) -> None:
        self.revocations.follow(context.runtime.event_hub)
        params = context.connection_params or {}
        token = params.get("token") or bearer_token(params.get("Authorization") or params.get("authorization"))
        async with context.runtime.reading() as session:
            context.actor = await authenticate(session, token if isinstance(token, str) else None)
        if context.actor is None:
            raise WebSocketRefused(4403, TOKEN_REQUIRED)
        token_key = hash_token(token)
        if self.open_connections[token_key] >= self.max_connections_per_token:
            raise WebSocketRefused(4429, TOO_MANY_CONNECTIONS)
        self.open_connections[token_key] += 1
        context.token_key = token_key

    async def close_revoked(self, revocation: Revocation) -> None:
        if not revocation.close:
            return
        for handler in list(self.live):
            if revocation.concerns(handler.context.actor):
                # A socket that closed meanwhile refuses a second close; the others still get theirs.
                with contextlib.suppress(RuntimeError, OSError):
                    await handler.websocket.close(code=4403, reason=revocation.reason)

    def release(self, context: Context) -> None:
        if context.token_key is not None:
            self.open_connections[context.token_key] -= 1
            if self.open_connections[context.token_key] <= 0:
                del self.open_connections[context.token_key]

    def refusal_before_running(self, payload: Any) -> GraphQLError | None:
        """The cost limit and the unstorable-character check, for an operation sent over the socket."""
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return None  # malformed: strawberry's handler answers it
        try:
            document = parse(payload["query"], max_tokens=self.max_query_tokens)
        except GraphQLError:
            return None  # strawberry's handler reports the syntax error
        variables = payload.get("variables") if isinstance(payload.get("variables"), dict) else {}
        operation_name = payload.get("operationName") if isinstance(payload.get("operationName"), str) else None
        return unstorable_refusal(document, variables) or cost_refusal(
            self.schema._schema, document, operation_name, variables, self.max_query_cost
        )

    def encode_json(self, data: object) -> str:
        # The protocol's clients (graphql-ws, gql, GraphiQL) accept only text frames.
        return orjson.dumps(data).decode()
