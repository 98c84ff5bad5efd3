"""The back-office lookup connector: a signed HTTP POST with a timeout, retries, a short result
cache and a circuit breaker, so a slow or dead CRM never holds up (or loses) a contact."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

SIGNATURE_HEADER = "X-Casegraph-Signature"
TIMESTAMP_HEADER = "X-Casegraph-Timestamp"
# Signing secrets live only in the environment, in variables with this prefix; a rule names one.
SECRET_ENV_PREFIX = "CASEGRAPH_SECRET_"
# A bigger answer is refused rather than read into memory and stored in the trace.
MAX_ANSWER_BYTES = 256 * 1024


class ConnectorUnavailable(Exception):
    """The connector could not answer. `failure` says what failed, as a code; the message is
    written here, never copied from the target's answer or from a library's exception."""

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(message)
        self.failure = failure


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HostPolicy:
    """Where lookups may go, set by an administrator (`CASEGRAPH_CONNECTOR_HOSTS`, comma-separated
    host names, `*.example.com` suffixes, addresses and networks); an address that is not globally
    routable (private, loopback, link-local, cloud metadata) only when listed itself or when
    `CASEGRAPH_CONNECTOR_ALLOW_PRIVATE` is on."""

    names: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    allow_private: bool = False

    @classmethod
    def parse(cls, hosts: str | tuple[str, ...], *, allow_private: bool = False) -> HostPolicy:
        entries = hosts.split(",") if isinstance(hosts, str) else hosts
        names: list[str] = []
        networks: list[Network] = []
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.append(entry)
        return cls(tuple(names), tuple(networks), allow_private)

    def host_refusal(self, host: str) -> str | None:
        """Why a URL's host is not on the allow-list, or None."""
        host = host.lower().rstrip(".")
        address = ip_literal(host)
        if address is not None:
            if any(address in network for network in self.networks):
                return None
        elif any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in self.names):
            return None
        return f"the host {host} is not on the connector allow-list (CASEGRAPH_CONNECTOR_HOSTS)"

    def address_refusal(self, address: Address) -> str | None:
        """Why a resolved address may not be called, or None."""
        if any(address in network for network in self.networks):
            return None  # listed explicitly
        mapped = getattr(address, "ipv4_mapped", None) or address
        if mapped.is_global and not mapped.is_multicast:
            return None
        if self.allow_private and not (mapped.is_unspecified or mapped.is_multicast):
            return None
        return "the host resolves to a private, loopback, link-local or reserved address"

    async def resolve(self, host: str, port: int, timeout: float) -> str:
        """The address to connect to: every address the name resolves to is checked first, so a
        DNS answer cannot point an allowed name inside (and the checked one is the one used)."""
        refusal = self.host_refusal(host)
        if refusal:
            raise ConnectorUnavailable("refused_host", refusal)
        literal = ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
                )
            except TimeoutError:
                raise ConnectorUnavailable("timeout", f"resolving the host timed out after {timeout}s") from None
            except OSError:
                raise ConnectorUnavailable("unreachable", "the host name does not resolve") from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
        if not addresses:
            raise ConnectorUnavailable("unreachable", "the host name does not resolve")
        for address in addresses:
            refusal = self.address_refusal(address)
            if refusal:
                raise ConnectorUnavailable("refused_host", refusal)
        return str(addresses[0])


def ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def secret_from_environment(name: str) -> str:
    """The signing secret a rule names: only a `CASEGRAPH_SECRET_*` variable is ever read."""
    if not name.startswith(SECRET_ENV_PREFIX):
        raise ConnectorUnavailable("secret_missing", f"secret_env must start with {SECRET_ENV_PREFIX}")
    secret = os.environ.get(name)
    if not secret:
        raise ConnectorUnavailable("secret_missing", f"the environment variable {name} holding the secret is not set")
    return secret


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
    """Per process: one HTTP client, the host policy, and per URL a result cache and a circuit breaker."""

    def __init__(self, policy: HostPolicy | None = None) -> None:
        self.policy = policy or HostPolicy()
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._cache: dict[tuple[str, bytes], tuple[float, dict[str, Any]]] = {}
        self._breakers: dict[str, _Breaker] = {}

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # No proxy from the environment (it would resolve names itself) and no redirects
            # (a redirect could point anywhere): the checked address is the one connected to.
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=50), trust_env=False, follow_redirects=False
            )
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
            raise ConnectorUnavailable("circuit_open", f"circuit open after {breaker.failures} consecutive failures")
        half_open = breaker.failures >= config["failure_threshold"]
        if half_open:
            # One trial call; everyone else keeps failing fast until it succeeds.
            breaker.open_until = now + config["reset_seconds"]
        attempts = 1 if half_open else 1 + config["retries"]
        failure = ConnectorUnavailable("unreachable", "no attempt made")
        for attempt in range(attempts):
            try:
                answer = await self._post(config, raw)
            except ConnectorUnavailable as error:
                if error.failure in ("refused_host", "secret_missing"):
                    raise  # a configuration matter: retrying or opening the circuit changes nothing
                failure = error
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
        raise ConnectorUnavailable(failure.failure, f"{failure} (after {attempts} attempt(s))")

    async def _post(self, config: dict[str, Any], raw: bytes) -> dict[str, Any]:
        url = httpx.URL(config["url"])
        timeout = config["timeout_seconds"]
        address = await self.policy.resolve(url.host, url.port or (443 if url.scheme == "https" else 80), timeout)
        headers = {"Content-Type": "application/json", "Host": url.netloc.decode("ascii")}
        if config.get("secret_env"):
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret_from_environment(config["secret_env"]), timestamp, raw)
        # Connect to the checked address; the name still goes in the Host header and in TLS (SNI
        # and certificate check).
        request = self._http().build_request(
            "POST",
            url.copy_with(host=address),
            content=raw,
            headers=headers,
            timeout=timeout,
            extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
        )
        try:
            response = await self._http().send(request, stream=True)
            try:
                if response.status_code == 404:
                    return {}  # the back office does not know this contact: an answer, not a failure
                if response.status_code != 200:
                    raise ConnectorUnavailable("http_status", f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ConnectorUnavailable("invalid_answer", f"answer larger than {MAX_ANSWER_BYTES} bytes")
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ConnectorUnavailable("timeout", f"timed out after {timeout}s") from None
        except httpx.HTTPError:
            raise ConnectorUnavailable("unreachable", "could not connect or the connection failed") from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ConnectorUnavailable("invalid_answer", "answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ConnectorUnavailable("invalid_answer", "answer is not a JSON object")
        return answer

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._cache.items() if expires <= now]:
            del self._cache[key]


connectors = LookupConnectors()
