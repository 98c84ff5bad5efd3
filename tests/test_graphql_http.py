"""GraphQL over HTTP as the spec and Apollo's clients expect: media types, status codes, JSON
refusals, persisted queries, CORS. (graphql-http's audits in test_clients_js.py cover the rest.)"""

import dataclasses
import hashlib
import json

import httpx
import pytest
import websockets

from app.asgi import create_app
from app.persisted_queries import PersistedQueries
from tests.conftest import serve_app

ME = "{ me { name } }"
RESPONSE_JSON = "application/graphql-response+json"


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def persisted(document: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(document)}}


@pytest.fixture
def auth(admin_token) -> dict:
    return {"Authorization": f"Bearer {admin_token}"}


async def test_no_token_is_a_json_401_with_a_bearer_challenge(http):
    missing = await http.post("/graphql", json={"query": ME})
    wrong = await http.post("/graphql", json={"query": ME}, headers={"Authorization": "Bearer cg_nope"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="casegraph"'
    assert wrong.headers["www-authenticate"] == 'Bearer realm="casegraph", error="invalid_token"'
    assert missing.json() == {
        "errors": [{"message": "A valid bearer token is required", "extensions": {"code": "UNAUTHENTICATED"}}]
    }
    assert missing.headers["content-type"] == "application/json; charset=utf-8"


async def test_the_answer_takes_the_media_type_the_client_prefers(http, auth):
    new = await http.post(
        "/graphql", json={"query": ME}, headers={**auth, "Accept": f"{RESPONSE_JSON}, application/json;q=0.9"}
    )
    legacy = await http.post(
        "/graphql", json={"query": ME}, headers={**auth, "Accept": f"application/json, {RESPONSE_JSON};q=0.5"}
    )
    refused = await http.post("/graphql", json={"query": ME}, headers={**auth, "Accept": "text/csv"})

    assert (
        new.headers["content-type"] == f"{RESPONSE_JSON}; charset=utf-8" and new.json()["data"]["me"]["name"] == "admin"
    )
    assert legacy.headers["content-type"] == "application/json; charset=utf-8"
    assert refused.status_code == 406 and refused.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


async def test_a_validation_error_is_400_in_the_new_media_type_and_200_in_legacy_json(http, auth):
    bad = {"query": "{ nope }"}
    new = await http.post("/graphql", json=bad, headers={**auth, "Accept": RESPONSE_JSON})
    legacy = await http.post("/graphql", json=bad, headers={**auth, "Accept": "application/json"})

    assert new.status_code == 400 and legacy.status_code == 200
    assert "data" not in new.json() and "data" not in legacy.json()
    assert "Cannot query field 'nope'" in new.json()["errors"][0]["message"]


async def test_a_mutation_over_get_is_405(http, auth):
    response = await http.get(
        "/graphql",
        params={"query": 'mutation { customerCreate(input: {name: "X"}) { errors { code } } }'},
        headers=auth,
    )

    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    nothing_created = await http.post(
        "/graphql", json={"query": "{ customers(first: 1) { edges { node { id } } } }"}, headers=auth
    )
    assert nothing_created.json()["data"]["customers"]["edges"] == []


async def test_a_subscription_over_http_is_told_where_to_go_and_logs_nothing(http, auth, caplog):
    response = await http.post("/graphql", json={"query": "subscription { contactReceived { id } }"}, headers=auth)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "SUBSCRIPTION_OVER_HTTP" and "WebSocket" in error["message"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_several_operations_need_an_operation_name(http, auth):
    document = "query A { me { name } } query B { me { role } }"
    unnamed = await http.post("/graphql", json={"query": document}, headers={**auth, "Accept": RESPONSE_JSON})
    named = await http.post("/graphql", json={"query": document, "operationName": "B"}, headers=auth)
    unknown = await http.post("/graphql", json={"query": document, "operationName": "C"}, headers=auth)

    assert unnamed.status_code == 400 and "operationName" in unnamed.json()["errors"][0]["message"]
    assert named.json() == {"data": {"me": {"role": "ADMIN"}}}
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["message"] == 'Unknown operation named "C".'


async def test_a_persisted_query_is_not_found_then_registered_then_served_by_hash_over_get(http, auth):
    hash_only = {"query": None, "extensions": persisted(ME)}
    first = await http.post("/graphql", json=hash_only, headers=auth)
    registered = await http.post("/graphql", json={"query": ME, "extensions": persisted(ME)}, headers=auth)
    by_get = await http.get("/graphql", params={"extensions": json.dumps(persisted(ME))}, headers=auth)

    assert first.status_code == 200  # legacy JSON: Apollo's own server answers 200 too
    assert first.json() == {
        "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
    }
    assert registered.json() == by_get.json() == {"data": {"me": {"name": "admin"}}}


async def test_a_persisted_query_must_match_its_hash_and_be_valid_to_be_kept(http, auth, runtime):
    mismatch = await http.post("/graphql", json={"query": ME, "extensions": persisted("{ other }")}, headers=auth)
    invalid = await http.post("/graphql", json={"query": "{ nope }", "extensions": persisted("{ nope }")}, headers=auth)
    retry = await http.post("/graphql", json={"extensions": persisted("{ nope }")}, headers=auth)

    assert (
        mismatch.status_code == 400
        and mismatch.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    )
    assert "Cannot query field" in invalid.json()["errors"][0]["message"]
    assert retry.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert await PersistedQueries(runtime.redis, max_entries=10).get(sha("{ nope }")) is None


async def test_the_persisted_query_store_is_shared_through_redis_and_bounded(runtime):
    one_process = PersistedQueries(runtime.redis, max_entries=3)
    documents = [f"{{ me {{ name }} }} # {i}" for i in range(5)]
    for document in documents:
        await one_process.put(sha(document), document)

    another_process = PersistedQueries(runtime.redis, max_entries=3)
    kept = [await another_process.get(sha(document)) for document in documents]

    assert kept == [None, None, *documents[2:]]  # the two oldest were dropped


@pytest.fixture
async def cors_server(settings, runtime):
    """The app with one allowed browser origin, on a real socket."""
    app = create_app(dataclasses.replace(settings, cors_origins=("http://localhost:3000",)), runtime=runtime)
    server, task, port = await serve_app(app)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_cors_admits_only_the_configured_origins(cors_server, admin_token):
    preflight_headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with httpx.AsyncClient(base_url=f"http://{cors_server}") as client:
        preflight = await client.options("/graphql", headers={"Origin": "http://localhost:3000", **preflight_headers})
        allowed = await client.post(
            "/graphql",
            json={"query": ME},
            headers={"Origin": "http://localhost:3000", "Authorization": f"Bearer {admin_token}"},
        )
        other = await client.post(
            "/graphql",
            json={"query": ME},
            headers={"Origin": "http://evil.example", "Authorization": f"Bearer {admin_token}"},
        )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in other.headers


async def test_cors_off_by_default(http, auth):
    response = await http.post("/graphql", json={"query": ME}, headers={**auth, "Origin": "http://localhost:3000"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


async def test_websockets_from_a_browser_page_need_an_allowed_origin(cors_server):
    url = f"ws://{cors_server}/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], origin="http://localhost:3000") as ws:
        assert ws.subprotocol == "graphql-transport-ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=["graphql-transport-ws"], origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_graphiql_page_is_served_to_a_browser_without_a_token(http):
    page = await http.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


async def test_a_chunked_body_over_the_limit_without_content_length_is_a_413(http, auth):
    async def chunks():
        for _ in range(3):
            yield b" " * (512 * 1024)

    response = await http.post("/graphql", content=chunks(), headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("body", [b"5", b'"x"', b"[" * 200_000 + b"]" * 200_000, b"null"])
async def test_a_body_that_is_not_one_json_object_is_a_400(http, auth, body):
    response = await http.post("/graphql", content=body, headers={**auth, "Content-Type": "application/json"})

    assert response.status_code == 400 and response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_persisted_queries_degrade_to_full_documents_when_redis_is_unreachable(gql):
    from redis.asyncio import Redis

    cut_off = Redis.from_url("unix:///nonexistent/redis.sock")
    store = PersistedQueries(cut_off, max_entries=10)
    try:
        missing = await store.get(sha(ME))
        await store.put(sha(ME), ME)  # logs, does not raise
        kept_locally = await store.get(sha(ME))
    finally:
        await cut_off.aclose()

    assert missing is None and kept_locally == ME
