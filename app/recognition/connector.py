"""The back-office lookup connector: a signed HTTP POST with a timeout, retries, a short result
cache and a circuit breaker, so a slow or dead CRM never holds up (or loses) a contact."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

SIGNATURE_HEADER = "X-Casegraph-Signature"
TIMESTAMP_HEADER = "X-Casegraph-Timestamp"


class ConnectorUnavailable(Exception):
    """The connector could not answer (timeout, network error, 5xx, bad answer, or circuit open)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """For the receiving side: is `signature` ours for this timestamp and body?"""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class LookupConnectors:
    """Per process: one HTTP client, and per URL a result cache and a circuit breaker."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._cache: dict[tuple[str, bytes], tuple[float, dict[str, Any]]] = {}
        self._breakers: dict[str, _Breaker] = {}

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=50))
            self._client_loop = loop
        return self._client

    def reset(self) -> None:
        """Forget cached answers and breaker state (after a rule change, and between tests)."""
        self._cache.clear()
        self._breakers.clear()

    def breaker_open(self, url: str) -> bool:
        breaker = self._breakers.get(url)
        return breaker is not None and breaker.open_until > time.monotonic()

    async def call(self, config: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(answer, from_cache); raises ConnectorUnavailable."""
        url = config["url"]
        raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        key = (url, hashlib.sha256(raw).digest())
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], True
        breaker = self._breakers.setdefault(url, _Breaker())
        if breaker.open_until > now:
            raise ConnectorUnavailable(f"circuit open after {breaker.failures} consecutive failures")
        half_open = breaker.failures >= config["failure_threshold"]
        if half_open:
            # One trial call; everyone else keeps failing fast until it succeeds.
            breaker.open_until = now + config["reset_seconds"]
        attempts = 1 if half_open else 1 + config["retries"]
        error = "no attempt made"
        for attempt in range(attempts):
            try:
                answer = await self._post(config, raw)
            except ConnectorUnavailable as failure:
                error = str(failure)
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.05 * 2**attempt)
                continue
            breaker.failures, breaker.open_until = 0, 0.0
            if config["cache_seconds"] > 0:
                self._cache[key] = (time.monotonic() + config["cache_seconds"], answer)
                if len(self._cache) > 10_000:
                    self._evict()
            return answer, False
        breaker.failures += 1
        if breaker.failures >= config["failure_threshold"]:
            breaker.open_until = time.monotonic() + config["reset_seconds"]
        raise ConnectorUnavailable(f"{error} (after {attempts} attempt(s))")

    async def _post(self, config: dict[str, Any], raw: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        secret = config.get("secret")
        if config.get("secret_env"):
            secret = os.environ.get(config["secret_env"])
            if not secret:
                raise ConnectorUnavailable(
                    f"the environment variable {config['secret_env']} holding the secret is not set"
                )
        if secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, raw)
        try:
            response = await self._http().post(
                config["url"], content=raw, headers=headers, timeout=config["timeout_seconds"]
            )
        except httpx.TimeoutException:
            raise ConnectorUnavailable(f"timed out after {config['timeout_seconds']}s") from None
        except httpx.HTTPError as failure:
            raise ConnectorUnavailable(f"{type(failure).__name__}: {failure}") from None
        if response.status_code == 404:
            return {}  # the back office does not know this contact: an answer, not a failure
        if response.status_code != 200:
            raise ConnectorUnavailable(f"HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise ConnectorUnavailable("answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ConnectorUnavailable("answer is not a JSON object")
        return answer

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._cache.items() if expires <= now]:
            del self._cache[key]


connectors = LookupConnectors()
