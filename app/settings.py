"""Configuration, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The arq queue the worker serves and every producer (API, SMTP listener, jobs) enqueues on.
JOB_QUEUE = "casegraph:queue"


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    redis_url: str | None
    debug: bool
    introspection: bool
    max_query_depth: int
    max_query_tokens: int
    max_aliases: int
    max_query_cost: int
    max_body_bytes: int
    default_phone_region: str
    cors_origins: tuple[str, ...]
    persisted_queries_max: int
    ws_max_subscriptions: int
    ws_max_connections_per_token: int
    ws_init_timeout_seconds: float
    events_retained: int
    connector_hosts: tuple[str, ...]
    connector_allow_private: bool
    # A PEM file of certificates trusted besides the system's for mail servers (IMAP, relays) with a private CA.
    mail_ca_file: str | None = None

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url


def load_settings() -> Settings:
    return Settings(
        home=Path(os.environ.get("CASEGRAPH_HOME", ".casegraph")).expanduser().resolve(),
        database_url=os.environ.get("DATABASE_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        debug=_flag("CASEGRAPH_DEBUG"),
        introspection=_flag("CASEGRAPH_INTROSPECTION", True),
        max_query_depth=int(os.environ.get("CASEGRAPH_MAX_DEPTH", "10")),
        max_query_tokens=int(os.environ.get("CASEGRAPH_MAX_TOKENS", "2000")),
        max_aliases=int(os.environ.get("CASEGRAPH_MAX_ALIASES", "30")),
        max_query_cost=int(os.environ.get("CASEGRAPH_MAX_COST", "50000")),
        max_body_bytes=int(os.environ.get("CASEGRAPH_MAX_BODY_BYTES", str(1024 * 1024))),
        default_phone_region=os.environ.get("CASEGRAPH_PHONE_REGION", "GB"),
        # Comma-separated origins of browser apps allowed to call the API, e.g. http://localhost:3000.
        cors_origins=tuple(
            o.strip().rstrip("/") for o in os.environ.get("CASEGRAPH_CORS_ORIGINS", "").split(",") if o.strip()
        ),
        persisted_queries_max=int(os.environ.get("CASEGRAPH_PERSISTED_QUERIES_MAX", "10000")),
        ws_max_subscriptions=int(os.environ.get("CASEGRAPH_WS_MAX_SUBSCRIPTIONS", "50")),
        ws_max_connections_per_token=int(os.environ.get("CASEGRAPH_WS_MAX_CONNECTIONS_PER_TOKEN", "20")),
        ws_init_timeout_seconds=float(os.environ.get("CASEGRAPH_WS_INIT_TIMEOUT", "10")),
        events_retained=int(os.environ.get("CASEGRAPH_EVENTS_RETAINED", "100000")),
        # Where lookup connectors may send requests (host names, *.suffixes, addresses, networks);
        # empty: nowhere. Private addresses only when listed or when allowed below.
        connector_hosts=tuple(
            h.strip() for h in os.environ.get("CASEGRAPH_CONNECTOR_HOSTS", "").split(",") if h.strip()
        ),
        connector_allow_private=_flag("CASEGRAPH_CONNECTOR_ALLOW_PRIVATE"),
        mail_ca_file=os.environ.get("CASEGRAPH_MAIL_CA_FILE") or None,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
