"""Inputs a fuzzer sends: each is refused with a code naming what is wrong (a UserError, a request
error, a 400 or a 413), never a masked "Unexpected error." nor a 500."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support import gid, make_case, make_contact, make_customer

ERRORS = "errors { field code message }"
CUSTOMER_BY_NUMBER = "query($n: String!) { customerByNumber(number: $n) { id } }"
CUSTOMER = "query($id: ID!) { customer(id: $id) { id } node(id: $id) { id } }"
CUSTOMER_UPDATE = f'mutation($id: ID!) {{ customerUpdate(input: {{id: $id, name: "X"}}) {{ {ERRORS} }} }}'
CUSTOMERS_AFTER = "query($after: String) { customers(after: $after) { edges { node { id } } } }"
HISTORY_AFTER = (
    "query($id: ID!, $after: String) { customer(id: $id) { contacts(after: $after) { edges { node { id } } } } }"
)
CONTACT_CREATE = (
    f"mutation($input: ContactCreateInput!) {{ contactCreate(input: $input) {{ contact {{ id }} {ERRORS} }} }}"
)
CUSTOMER_CREATE = f"mutation($input: CustomerCreateInput!) {{ customerCreate(input: $input) {{ customer {{ id fields }} {ERRORS} }} }}"


def refused(response) -> list[dict]:
    """The errors of a refused request, after checking it was refused on purpose."""
    assert response.status_code < 500, response.text
    body = response.json()
    assert "Unexpected error." not in response.text, body
    return body["errors"]


def cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def mutation_errors(response, name: str) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    return body["data"][name]["errors"]


# ---- NUL characters and lone surrogates ----------------------------------------------------------


async def test_a_nul_character_in_a_string_literal_is_refused_before_it_runs(gql, count_queries):
    await gql("{ me { name } }")  # the token lookup is cached from here on
    start = count_queries.count
    errors = refused(await gql.post('{ customerByNumber(number: "a\\u0000") { id } }'))

    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT" and "NUL" in errors[0]["message"]
    assert count_queries.count == start


@pytest.mark.parametrize(
    "variables",
    [
        {"n": "C-\x00"},
        {"input": {"channel": "EMAIL", "direction": "INBOUND", "payload": {"note": "a\x00b"}}},
        {"input": {"channel": "EMAIL", "direction": "INBOUND", "payload": {"a\x00": 1}}},
        {"input": {"channel": "EMAIL", "direction": "INBOUND", "to": ["x\x00@example.com"]}},
    ],
)
async def test_a_nul_character_anywhere_in_the_variables_is_refused(gql, variables):
    document = CUSTOMER_BY_NUMBER if "n" in variables else CONTACT_CREATE
    errors = refused(await gql.post(document, variables))

    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_lone_surrogate_is_refused_whichever_way_it_is_written(http, gql, admin_token):
    escaped = b'{"query": "mutation($n: String) { customerCreate(input: {name: $n}) { customer { id } } }", "variables": {"n": "\\ud800"}}'
    over_http = await http.post(
        "/graphql",
        content=escaped,
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    literal = await gql.post('mutation { customerCreate(input: {name: "\\uD800"}) { customer { id } } }')

    assert over_http.status_code == 400
    refused(literal)
    assert (await gql("{ customers { edges { node { id } } } }"))["customers"]["edges"] == []


def test_the_character_check_finds_a_lone_surrogate_and_names_where():
    from app.limits import unstorable_character

    assert unstorable_character({"input": {"name": "Ada\ud800"}}) == "input.name"
    assert unstorable_character({"input": {"to": ["ok", "x\x00"]}}) == "input.to.1"
    assert unstorable_character({"input": {"name": "Ada 😀", "n": 1}}) is None


# ---- global ids and cursors --------------------------------------------------------------------

BAD_IDS = [
    "Customer:9223372036854775808",
    "Customer:18446744073709551616",
    "Customer:-1",
    "Customer:0",
    "Customer:1_000",
    "Customer: 2",
    "Customer:2 ",
    "Customer:02",
    "Customer:\u0662",  # Arabic-Indic two
    "Customer:" + "9" * 5000,
    "Customer:[[[[1]]]]",
    "Customer:1:2",
]


@pytest.mark.parametrize("raw", BAD_IDS)
async def test_a_global_id_parses_strictly(gql, runtime, raw):
    await make_customer(runtime, "Ada")
    await make_customer(runtime, "Bob")
    global_id = base64.b64encode(raw.encode()).decode()

    found = await gql(CUSTOMER, {"id": global_id})
    errors = mutation_errors(await gql.post(CUSTOMER_UPDATE, {"id": global_id}), "customerUpdate")

    assert found == {"customer": None, "node": None}
    assert [(e["field"], e["code"]) for e in errors] == [("id", "NOT_FOUND")]


def test_a_global_id_round_trips():
    from schema.ids import from_global_id, to_global_id

    assert from_global_id(to_global_id("Customer", 9223372036854775807)) == ("Customer", 9223372036854775807)
    assert from_global_id(to_global_id("Case", 42)) == ("Case", 42)


@pytest.mark.parametrize(
    "after",
    [
        cursor([2**64]),
        cursor([2**63]),
        cursor([-(2**63) - 1]),
        cursor([True]),
        cursor([[[[1]]]]),
        base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode(),
        "%%%",
        "x" * 10_000,
    ],
)
async def test_a_cursor_outside_bigint_or_malformed_is_invalid(gql, after):
    errors = refused(await gql.post(CUSTOMERS_AFTER, {"after": after}))

    assert errors[0]["message"] == "malformed cursor" and errors[0]["path"] == ["customers"]


async def test_a_cursor_time_that_overflows_in_utc_is_invalid(gql, runtime):
    customer = await make_customer(runtime, "Ada")
    await make_contact(runtime, customer_id=customer)

    for time in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        errors = refused(await gql.post(HISTORY_AFTER, {"id": gid("Customer", customer), "after": cursor([time, 1])}))
        assert errors[0]["message"] == "malformed cursor"


async def test_a_contact_time_that_overflows_in_utc_is_a_request_error(gql, runtime):
    customer = await make_customer(runtime, "Ada")
    variables = {
        "input": {
            "channel": "PHONE",
            "direction": "INBOUND",
            "customerId": gid("Customer", customer),
            "occurredAt": "0001-01-01T00:00:00+14:00",
        }
    }

    errors = refused(await gql.post(CONTACT_CREATE, variables))

    assert "occurredAt" in errors[0]["message"] and "DateTime" in errors[0]["message"]


async def test_a_contact_time_is_stored_as_the_same_instant(gql, runtime):
    customer = await make_customer(runtime, "Ada")
    variables = {
        "input": {
            "channel": "PHONE",
            "direction": "INBOUND",
            "customerId": gid("Customer", customer),
            "occurredAt": "2026-03-01T10:00:00+02:00",
        }
    }
    created = await gql(CONTACT_CREATE.replace("contact { id }", "contact { occurredAt }"), variables)

    assert created["contactCreate"]["contact"]["occurredAt"] == "2026-03-01T08:00:00+00:00"


# ---- JSON that PostgreSQL cannot store, or that is not an object ----------------------------------

CASE_CREATE = f"mutation($input: CaseCreateInput!) {{ caseCreate(input: $input) {{ case {{ id }} {ERRORS} }} }}"
CASE_UPDATE = f"mutation($input: CaseUpdateInput!) {{ caseUpdate(input: $input) {{ case {{ fields }} {ERRORS} }} }}"
CUSTOMER_FIELDS_UPDATE = (
    f"mutation($input: CustomerUpdateInput!) {{ customerUpdate(input: $input) {{ customer {{ fields }} {ERRORS} }} }}"
)


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


UNSTORABLE_JSON = [
    [1],
    "text",
    7,
    {"big": 2**64},
    {"big": [2**63]},
    {"small": -(2**63) - 1},
    nested(300),
]


@pytest.mark.parametrize("value", UNSTORABLE_JSON[:3])
async def test_custom_fields_must_be_an_object_when_created(gql, runtime, value):
    customer = await make_customer(runtime, "Ada")

    on_customer = await gql.post(CUSTOMER_CREATE, {"input": {"name": "Bob", "fields": value}})
    on_case = await gql.post(
        CASE_CREATE, {"input": {"subject": "S", "customerIds": [gid("Customer", customer)], "fields": value}}
    )

    assert mutation_errors(on_customer, "customerCreate") == [
        {"field": "fields", "code": "INVALID", "message": "fields must be a JSON object"}
    ]
    assert [(e["field"], e["code"]) for e in mutation_errors(on_case, "caseCreate")] == [("fields", "INVALID")]


async def test_a_record_created_with_fields_stays_updatable(gql):
    created = await gql(CUSTOMER_CREATE, {"input": {"name": "Bob", "fields": {"tier": "gold"}}})
    customer = created["customerCreate"]["customer"]["id"]

    refused_update = await gql.post(CUSTOMER_FIELDS_UPDATE, {"input": {"id": customer, "fields": [1]}})
    updated = await gql(CUSTOMER_FIELDS_UPDATE, {"input": {"id": customer, "fields": {"vip": True}}})

    assert [(e["field"], e["code"]) for e in mutation_errors(refused_update, "customerUpdate")] == [
        ("fields", "INVALID")
    ]
    assert updated["customerUpdate"]["customer"]["fields"] == {"tier": "gold", "vip": True}


def literal(value) -> str:
    """A JSON value written as a GraphQL literal (integers of any size survive, unlike in JSON variables)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return json.dumps(value)


@pytest.mark.parametrize("value", UNSTORABLE_JSON[3:])
async def test_json_the_database_cannot_store_is_invalid(gql, runtime, value):
    customer = await make_customer(runtime, "Ada")
    case = await make_case(runtime, [customer])
    customer_id, case_id = gid("Customer", customer), gid("Case", case)

    # Integers beyond 64 bits survive only in a literal (JSON variables read them as floats); the
    # parser refuses literals nested this deep, so deep values travel as variables.
    deep = value == nested(300)
    argument = "$v" if deep else literal(value)
    declared = "($v: JSON)" if deep else ""
    documents = {
        "customerCreate": f'customerCreate(input: {{name: "B", fields: {argument}}})',
        "customerUpdate": f'customerUpdate(input: {{id: "{customer_id}", fields: {argument}}})',
        "caseUpdate": f'caseUpdate(input: {{id: "{case_id}", fields: {argument}}})',
        "contactCreate": f'contactCreate(input: {{channel: EMAIL, direction: INBOUND, customerId: "{customer_id}", '
        f"payload: {argument}}})",
    }
    answers = {
        name: await gql.post(f"mutation{declared} {{ {field} {{ {ERRORS} }} }}", {"v": value} if deep else None)
        for name, field in documents.items()
    }

    for name, response in answers.items():
        assert [(e["field"], e["code"]) for e in mutation_errors(response, name)] == [
            ("payload" if name == "contactCreate" else "fields", "INVALID")
        ], name


@pytest.mark.parametrize("headers", [[1], "Message-ID: <a@b>", {"XBig": 2**64}])
async def test_contact_headers_must_be_a_storable_object(gql, runtime, headers):
    customer = await make_customer(runtime, "Ada")

    response = await gql.post(
        f'mutation {{ contactCreate(input: {{channel: EMAIL, direction: INBOUND, customerId: "{gid("Customer", customer)}", '
        f"headers: {literal(headers)}}}) {{ {ERRORS} }} }}"
    )

    assert [(e["field"], e["code"]) for e in mutation_errors(response, "contactCreate")] == [("headers", "INVALID")]


# ---- lengths and list sizes ---------------------------------------------------------------------

MEGABYTE = "x" * 1_000_000
INGEST = f"mutation($input: ContactIngestInput!) {{ contactIngest(input: $input) {{ contact {{ id }} {ERRORS} }} }}"
IDENTIFIER_ADD = (
    f"mutation($input: CustomerIdentifierAddInput!) {{ customerIdentifierAdd(input: $input) {{ {ERRORS} }} }}"
)


def field_codes(response, name: str) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in mutation_errors(response, name)]


@pytest.mark.parametrize(
    ("identifiers", "field"),
    [
        ({"emails": [MEGABYTE + "@example.com"]}, "emails.0"),
        ({"accountIds": [MEGABYTE]}, "accountIds.0"),
        ({"phones": ["+44 20 7946 0000"], "accountIds": ["A-1", "A" * 255]}, "accountIds.1"),
        ({"phones": ["1" * 100_000]}, "phones.0"),
    ],
)
async def test_an_identifier_too_long_for_its_index_is_invalid_naming_it(gql, identifiers, field):
    response = await gql.post(CUSTOMER_CREATE, {"input": {"name": "Ada", **identifiers}})

    assert field_codes(response, "customerCreate") == [(field, "INVALID")]


async def test_ten_thousand_identifiers_on_one_customer_are_refused_quickly(gql, count_queries):
    import time

    emails = [f"user{i}@example.com" for i in range(10_000)]
    phones = [f"+4420794{i:05d}" for i in range(10_000)]
    await gql("{ me { name } }")
    start = count_queries.count
    began = time.perf_counter()

    by_email = await gql.post(CUSTOMER_CREATE, {"input": {"name": "Ada", "emails": emails}})
    by_phone = await gql.post(CUSTOMER_CREATE, {"input": {"name": "Ada", "emails": emails[:40], "phones": phones}})

    assert time.perf_counter() - began < 1.5
    assert field_codes(by_email, "customerCreate") == [("emails", "INVALID")]
    assert field_codes(by_phone, "customerCreate") == [("phones", "INVALID")]
    assert count_queries.count == start


async def test_repeated_identifiers_are_stored_once(gql):
    created = await gql(
        CUSTOMER_CREATE.replace("customer { id fields }", "customer { identifiers { kind value } }"),
        {"input": {"emails": ["ada@example.com", "ADA@example.com "] * 5, "accountIds": ["A-1", "A-1"]}},
    )

    assert sorted((i["kind"], i["value"]) for i in created["customerCreate"]["customer"]["identifiers"]) == [
        ("ACCOUNT_ID", "A-1"),
        ("EMAIL", "ada@example.com"),
    ]


async def test_adding_identifiers_stops_at_the_limit(gql, runtime):
    from app import limits

    customer = await make_customer(
        runtime, "Ada", emails=[f"a{i}@example.com" for i in range(limits.IDENTIFIERS_PER_CUSTOMER)]
    )

    response = await gql.post(
        IDENTIFIER_ADD, {"input": {"customerId": gid("Customer", customer), "kind": "PHONE", "value": "+442079460000"}}
    )

    assert field_codes(response, "customerIdentifierAdd") == [("customerId", "INVALID")]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"subject": "s" * 501}, "subject"),
        ({"severity": "s" * 51}, "severity"),
        ({"description": "d" * 20_001}, "description"),
    ],
)
async def test_case_texts_have_limits(gql, runtime, extra, field):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    case = gid("Case", await make_case(runtime, [await make_customer(runtime, "Bob")]))

    created = await gql.post(CASE_CREATE, {"input": {"subject": "S", "customerIds": [customer], **extra}})
    updated = await gql.post(CASE_UPDATE, {"input": {"id": case, **extra}})

    assert field_codes(created, "caseCreate") == [(field, "INVALID")]
    assert field_codes(updated, "caseUpdate") == [(field, "INVALID")]


async def test_a_case_concerns_a_bounded_number_of_customers(gql, runtime):
    ada = gid("Customer", await make_customer(runtime, "Ada"))

    response = await gql.post(CASE_CREATE, {"input": {"subject": "S", "customerIds": [ada] * 10_000}})

    assert field_codes(response, "caseCreate") == [("customerIds", "INVALID")]


async def test_a_name_and_a_reason_code_have_limits(gql, runtime):
    customer = gid("Customer", await make_customer(runtime, "Ada"))
    case = gid("Case", await make_case(runtime, [await make_customer(runtime, "Bob")]))

    named = await gql.post(CUSTOMER_CREATE, {"input": {"name": "n" * 201}})
    renamed = await gql.post(CUSTOMER_FIELDS_UPDATE, {"input": {"id": customer, "name": "n" * 201}})
    closed = await gql.post(
        f"mutation($id: ID!, $r: String!) {{ caseClose(input: {{caseId: $id, reasonCode: $r}}) {{ {ERRORS} }} }}",
        {"id": case, "r": "r" * 101},
    )

    assert field_codes(named, "customerCreate") == [("name", "INVALID")]
    assert field_codes(renamed, "customerUpdate") == [("name", "INVALID")]
    assert field_codes(closed, "caseClose") == [("reasonCode", "INVALID")]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"externalId": MEGABYTE}, "externalId"),
        ({"headers": {"Message-ID": f"<{MEGABYTE}@example.com>"}}, "headers.Message-ID"),
        ({"subject": "s" * 501}, "subject"),
        ({"from": MEGABYTE}, "from"),
        ({"to": ["a@example.com"] * 101}, "to"),
        ({"to": ["a@example.com", MEGABYTE]}, "to.1"),
    ],
)
async def test_contact_texts_too_long_for_their_index_or_limit_are_invalid(gql, runtime, extra, field):
    customer = gid("Customer", await make_customer(runtime, "Ada"))

    created = await gql.post(
        CONTACT_CREATE, {"input": {"channel": "EMAIL", "direction": "INBOUND", "customerId": customer, **extra}}
    )
    ingested = await gql.post(
        INGEST,
        {"input": {"source": "mail", "externalId": "m-1", "channel": "EMAIL", **extra}},
    )

    assert field_codes(created, "contactCreate") == [(field, "INVALID")]
    assert field_codes(ingested, "contactIngest") == [(field, "INVALID")]


async def test_a_merge_or_a_move_takes_a_bounded_number_of_ids(gql, runtime):
    ada = gid("Customer", await make_customer(runtime, "Ada"))
    case = gid("Case", await make_case(runtime, [await make_customer(runtime, "Bob")]))
    many_customers = [gid("Customer", i) for i in range(2, 103)]
    many_contacts = [gid("Contact", i) for i in range(1, 102)]

    merged = await gql.post(
        f"mutation($s: ID!, $d: [ID!]!) {{ customerMerge(input: {{survivorId: $s, duplicateIds: $d}}) {{ {ERRORS} }} }}",
        {"s": ada, "d": many_customers},
    )
    moved = await gql.post(
        f"mutation($c: [ID!]!, $to: ID!) {{ contactMove(input: {{contactIds: $c, toCaseId: $to}}) {{ {ERRORS} }} }}",
        {"c": many_contacts, "to": case},
    )

    assert field_codes(merged, "customerMerge") == [("duplicateIds", "INVALID")]
    assert field_codes(moved, "contactMove") == [("contactIds", "INVALID")]


def test_json_may_nest_up_to_the_limit():
    from app import limits
    from app.errors import UserError

    assert limits.check_json_object(nested(limits.JSON_DEPTH), "fields") == nested(limits.JSON_DEPTH)
    with pytest.raises(UserError):
        limits.check_json_object(nested(limits.JSON_DEPTH + 1), "fields")
