"""Forms: field definitions of the customer profile and of case templates, checked on every write
through the API (one error per bad field), dictionaries for dropdowns, and case templates."""

from __future__ import annotations

from sqlalchemy import text

from app.services.forms import checked_fields
from schema.ids import to_global_id
from tests.support import gid, make_customer

ERRORS = "errors { field code message }"
DICTIONARY_CREATE = f"""mutation($input: DictionaryCreateInput!) {{
  dictionaryCreate(input: $input) {{ dictionary {{ id name entries {{ value label }} }} {ERRORS} }} }}"""
DICTIONARY_UPDATE = f"""mutation($input: DictionaryUpdateInput!) {{
  dictionaryUpdate(input: $input) {{ dictionary {{ id entries(includeInactive: true) {{ value active }} }} {ERRORS} }} }}"""
DICTIONARY_DELETE = f"mutation($id: ID!) {{ dictionaryDelete(input: {{id: $id}}) {{ deletedId {ERRORS} }} }}"
FIELD_CREATE = f"""mutation($input: FormFieldCreateInput!) {{
  formFieldCreate(input: $input) {{ formField {{ id key type }} {ERRORS} }} }}"""
FIELD_UPDATE = f"""mutation($input: FormFieldUpdateInput!) {{
  formFieldUpdate(input: $input) {{ formField {{ id mandatory }} {ERRORS} }} }}"""
CUSTOMER_FORM = """{ customerForm { key label type mandatory helpText position pattern patternMessage
  dictionary { name } options { value label } } }"""
CUSTOMER_CREATE = f"""mutation($input: CustomerCreateInput!) {{
  customerCreate(input: $input) {{ customer {{ id fields }} {ERRORS} }} }}"""
CUSTOMER_UPDATE = f"""mutation($input: CustomerUpdateInput!) {{
  customerUpdate(input: $input) {{ customer {{ id fields }} {ERRORS} }} }}"""
TEMPLATE_CREATE = f"""mutation($input: CaseTemplateCreateInput!) {{
  caseTemplateCreate(input: $input) {{ caseTemplate {{ id name }} {ERRORS} }} }}"""
TEMPLATE_UPDATE = f"""mutation($input: CaseTemplateUpdateInput!) {{
  caseTemplateUpdate(input: $input) {{ caseTemplate {{ id active fields }} {ERRORS} }} }}"""
TEMPLATE_DELETE = f"mutation($id: ID!) {{ caseTemplateDelete(input: {{id: $id}}) {{ deletedId {ERRORS} }} }}"
CASE_CREATE = f"""mutation($input: CaseCreateInput!) {{ caseCreate(input: $input) {{
  case {{ id subject priority fields pool {{ name }} template {{ name form {{ key }} }} }} {ERRORS} }} }}"""
CASE_UPDATE = f"""mutation($input: CaseUpdateInput!) {{ caseUpdate(input: $input) {{ case {{ fields }} {ERRORS} }} }}"""
POOL_CREATE = "mutation($name: String!) { poolCreate(input: {name: $name}) { pool { id } } }"
POSTCODE = r"[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}"


def errors_of(data: dict, mutation: str) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in data[mutation]["errors"]]


async def add_field(gql, **definition) -> str:
    data = await gql(FIELD_CREATE, {"input": definition})
    assert data["formFieldCreate"]["errors"] == []
    return data["formFieldCreate"]["formField"]["id"]


async def account_types(gql, pool_id: str | None = None) -> str:
    data = await gql(
        DICTIONARY_CREATE,
        {
            "input": {
                "name": "Account types",
                "poolId": pool_id,
                "entries": [
                    {"value": "private", "label": "Private"},
                    {"value": "business", "label": "Business"},
                    {"value": "legacy", "active": False},
                ],
            }
        },
    )
    assert data["dictionaryCreate"]["errors"] == []
    return data["dictionaryCreate"]["dictionary"]["id"]


async def customer_form_with_every_type(gql) -> str:
    """The customer form of seed 003: one field of each type; returns the dictionary's id."""
    dictionary = await account_types(gql)
    await add_field(gql, key="notes", label="Notes", type="TEXT", mandatory=True, helpText="What the caller wants")
    await add_field(gql, key="children", label="Children", type="NUMBER")
    await add_field(gql, key="birthday", label="Birthday", type="DATE")
    await add_field(gql, key="vip", label="VIP", type="BOOLEAN")
    await add_field(gql, key="accountType", label="Account type", type="DROPDOWN", dictionaryId=dictionary)
    await add_field(
        gql,
        key="postcode",
        label="Postcode",
        type="FIXED_FORMAT",
        pattern=POSTCODE,
        patternMessage="must be a UK postcode such as SW1A 1AA",
    )
    await add_field(gql, key="workEmail", label="Work email", type="EMAIL")
    await add_field(gql, key="mobile", label="Mobile", type="PHONE")
    return dictionary


async def count(runtime, table: str) -> int:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(text(f"SELECT count(*) FROM {table}"))


async def test_the_customer_form_is_exposed_in_order_with_its_dropdown_options(gql):
    await customer_form_with_every_type(gql)

    form = (await gql(CUSTOMER_FORM))["customerForm"]

    assert [(f["key"], f["type"], f["position"]) for f in form] == [
        ("notes", "TEXT", 0),
        ("children", "NUMBER", 1),
        ("birthday", "DATE", 2),
        ("vip", "BOOLEAN", 3),
        ("accountType", "DROPDOWN", 4),
        ("postcode", "FIXED_FORMAT", 5),
        ("workEmail", "EMAIL", 6),
        ("mobile", "PHONE", 7),
    ]
    assert form[0]["mandatory"] is True and form[0]["helpText"] == "What the caller wants"
    assert form[4]["dictionary"] == {"name": "Account types"}
    assert form[4]["options"] == [{"value": "private", "label": "Private"}, {"value": "business", "label": "Business"}]
    assert form[5]["patternMessage"] == "must be a UK postcode such as SW1A 1AA"


async def test_every_field_type_refuses_a_bad_value_one_error_per_field_and_nothing_is_created(gql, runtime):
    await customer_form_with_every_type(gql)
    bad = {
        "children": "two",
        "birthday": "31/12/1990",
        "vip": "yes",
        "accountType": "legacy",  # inactive: no longer offered
        "postcode": "12345",
        "workEmail": "ada@",
        "mobile": "12",
    }

    data = await gql(CUSTOMER_CREATE, {"input": {"name": "Ada", "fields": bad}})

    assert errors_of(data, "customerCreate") == [
        ("fields.notes", "REQUIRED"),
        ("fields.children", "INVALID"),
        ("fields.birthday", "INVALID"),
        ("fields.vip", "INVALID"),
        ("fields.accountType", "NOT_IN_DICTIONARY"),
        ("fields.postcode", "INVALID"),
        ("fields.workEmail", "INVALID"),
        ("fields.mobile", "INVALID"),
    ]
    messages = {e["field"]: e["message"] for e in data["customerCreate"]["errors"]}
    assert messages["fields.postcode"] == "Postcode must be a UK postcode such as SW1A 1AA"
    assert data["customerCreate"]["customer"] is None
    assert await count(runtime, "customers") == 0


async def test_good_values_are_stored_normalised_and_unknown_keys_are_kept(gql):
    await customer_form_with_every_type(gql)
    good = {
        "notes": "Wants a callback",
        "children": "2",
        "birthday": "1990-12-31",
        "vip": True,
        "accountType": "business",
        "postcode": "SW1A 1AA",
        "workEmail": "Ada@Example.COM",
        "mobile": "07700 900123",
        "crmRef": "X-1",  # no definition: kept as given
    }

    data = await gql(CUSTOMER_CREATE, {"input": {"name": "Ada", "fields": good}})

    assert data["customerCreate"]["errors"] == []
    assert data["customerCreate"]["customer"]["fields"] == {
        **good,
        "children": 2,
        "workEmail": "Ada@example.com",
        "mobile": "+447700900123",
    }


async def test_an_update_checks_only_what_it_writes_and_a_mandatory_field_cannot_be_emptied(gql):
    await customer_form_with_every_type(gql)
    created = await gql(CUSTOMER_CREATE, {"input": {"name": "Ada", "fields": {"notes": "n"}}})
    customer = created["customerCreate"]["customer"]["id"]

    fine = await gql(CUSTOMER_UPDATE, {"input": {"id": customer, "fields": {"children": 3}}})
    emptied = await gql(CUSTOMER_UPDATE, {"input": {"id": customer, "fields": {"notes": " ", "vip": 1}}})

    assert fine["customerUpdate"]["customer"]["fields"] == {"notes": "n", "children": 3}
    assert errors_of(emptied, "customerUpdate") == [("fields.notes", "REQUIRED"), ("fields.vip", "INVALID")]


async def test_changing_a_definition_does_not_break_records_already_stored(gql, runtime):
    dictionary = await account_types(gql)
    field = await add_field(gql, key="accountType", label="Account type", type="DROPDOWN", dictionaryId=dictionary)
    legacy = await make_customer(runtime, "Old", fields={"accountType": "business", "fax": "0123"})
    # "business" is withdrawn and a mandatory field appears after the record was stored.
    await gql(
        DICTIONARY_UPDATE,
        {"input": {"id": dictionary, "entries": [{"value": "private"}, {"value": "business", "active": False}]}},
    )
    await add_field(gql, key="segment", label="Segment", type="TEXT", mandatory=True)
    await gql(FIELD_UPDATE, {"input": {"id": field, "mandatory": True}})

    # The agent's form sends the record back whole: the stored value passes as it is.
    resent = await gql(
        CUSTOMER_UPDATE,
        {"input": {"id": gid("Customer", legacy), "fields": {"accountType": "business", "fax": "0123"}}},
    )
    newcomer = await gql(CUSTOMER_CREATE, {"input": {"fields": {"accountType": "business", "segment": "retail"}}})

    assert resent["customerUpdate"]["errors"] == []
    assert resent["customerUpdate"]["customer"]["fields"] == {"accountType": "business", "fax": "0123"}
    assert errors_of(newcomer, "customerCreate") == [("fields.accountType", "NOT_IN_DICTIONARY")]


async def test_a_profile_created_from_a_contact_is_not_held_to_the_form(gql):
    await add_field(gql, key="notes", label="Notes", type="TEXT", mandatory=True)
    ingest = """mutation($input: ContactIngestInput!) {
      contactIngest(input: $input) { customerCreated errors { code } } }"""

    # Intake creates the profile from what the contact carries; an agent completes the form later.
    data = await gql(
        ingest, {"input": {"source": "webform", "externalId": "f-1", "channel": "WEB", "from": "Eve <eve@example.com>"}}
    )

    assert data["contactIngest"] == {"customerCreated": True, "errors": []}


async def test_bad_field_definitions_are_typed_errors_and_change_nothing(gql, runtime):
    cases = [
        (
            {"key": "postcode", "label": "Postcode", "type": "FIXED_FORMAT", "pattern": "[A-Z"},
            ("pattern", "INVALID_PATTERN"),
        ),
        ({"key": "postcode", "label": "Postcode", "type": "FIXED_FORMAT"}, ("pattern", "REQUIRED")),
        ({"key": "kind", "label": "Kind", "type": "DROPDOWN"}, ("dictionaryId", "REQUIRED")),
        ({"key": "account type", "label": "Account type", "type": "TEXT"}, ("key", "INVALID")),
        ({"key": "notes", "label": " ", "type": "TEXT"}, ("label", "REQUIRED")),
    ]
    for definition, expected in cases:
        data = await gql(FIELD_CREATE, {"input": definition})
        assert errors_of(data, "formFieldCreate") == [expected], definition
    await add_field(gql, key="notes", label="Notes", type="TEXT")
    twice = await gql(FIELD_CREATE, {"input": {"key": "notes", "label": "Notes", "type": "TEXT"}})

    assert errors_of(twice, "formFieldCreate") == [("key", "DUPLICATE")]
    assert await count(runtime, "form_fields") == 1


async def test_a_dictionary_in_use_cannot_be_deleted_nor_the_pool_that_keeps_it(gql, runtime):
    pool = (await gql(POOL_CREATE, {"name": "Billing"}))["poolCreate"]["pool"]["id"]
    dictionary = await account_types(gql, pool_id=pool)
    unused = (await gql(DICTIONARY_CREATE, {"input": {"name": "Topics"}}))["dictionaryCreate"]["dictionary"]["id"]
    field = await add_field(gql, key="accountType", label="Account type", type="DROPDOWN", dictionaryId=dictionary)

    refused = await gql(DICTIONARY_DELETE, {"id": dictionary})
    pool_refused = await gql(f"mutation($id: ID!) {{ poolDelete(input: {{id: $id}}) {{ {ERRORS} }} }}", {"id": pool})
    by_pool = await gql("query($p: ID) { dictionaries(poolId: $p) { name pool { name } } }", {"p": pool})
    deleted = await gql(DICTIONARY_DELETE, {"id": unused})

    assert errors_of(refused, "dictionaryDelete") == [("id", "IN_USE")]
    assert errors_of(pool_refused, "poolDelete") == [("id", "IN_USE")]
    assert by_pool["dictionaries"] == [{"name": "Account types", "pool": {"name": "Billing"}}]
    assert deleted["dictionaryDelete"]["deletedId"] == unused
    assert await count(runtime, "dictionary_entries") == 3

    # Once the field no longer uses it, it goes.
    await gql(f"mutation($id: ID!) {{ formFieldDelete(input: {{id: $id}}) {{ {ERRORS} }} }}", {"id": field})
    assert (await gql(DICTIONARY_DELETE, {"id": dictionary}))["dictionaryDelete"]["errors"] == []
    assert await count(runtime, "dictionary_entries") == 0


async def test_bad_dictionaries_are_typed_errors(gql):
    twice = await gql(DICTIONARY_CREATE, {"input": {"name": "Topics", "entries": [{"value": "a"}, {"value": "a"}]}})
    await gql(DICTIONARY_CREATE, {"input": {"name": "Topics"}})
    same_name = await gql(DICTIONARY_CREATE, {"input": {"name": "Topics"}})

    assert errors_of(twice, "dictionaryCreate") == [("entries.1.value", "DUPLICATE")]
    assert errors_of(same_name, "dictionaryCreate") == [("name", "DUPLICATE")]


async def make_template(gql, **values) -> str:
    data = await gql(TEMPLATE_CREATE, {"input": {"name": "Credit card", **values}})
    assert data["caseTemplateCreate"]["errors"] == []
    return data["caseTemplateCreate"]["caseTemplate"]["id"]


async def test_a_case_opened_from_a_template_takes_its_defaults_and_the_input_wins(gql, runtime):
    pool = (await gql(POOL_CREATE, {"name": "Cards"}))["poolCreate"]["pool"]["id"]
    template = await make_template(
        gql, subject="Card blocked", priority="HIGH", poolId=pool, fields={"channel": "phone", "limit": 500}
    )
    await add_field(gql, templateId=template, key="limit", label="Limit", type="NUMBER", mandatory=True)
    ada = gid("Customer", await make_customer(runtime, "Ada"))

    defaults = await gql(CASE_CREATE, {"input": {"customerIds": [ada], "templateId": template}})
    own = await gql(
        CASE_CREATE,
        {
            "input": {
                "customerIds": [ada],
                "templateId": template,
                "subject": "Lost card",
                "priority": "LOW",
                "fields": {"limit": "900"},
            }
        },
    )

    case = defaults["caseCreate"]["case"]
    assert defaults["caseCreate"]["errors"] == []
    assert (case["subject"], case["priority"], case["pool"], case["fields"]) == (
        "Card blocked",
        "HIGH",
        {"name": "Cards"},
        {"channel": "phone", "limit": 500},
    )
    assert case["template"] == {"name": "Credit card", "form": [{"key": "limit"}]}
    assert (own["caseCreate"]["case"]["subject"], own["caseCreate"]["case"]["priority"]) == ("Lost card", "LOW")
    assert own["caseCreate"]["case"]["fields"] == {"channel": "phone", "limit": 900}


async def test_a_templates_form_checks_the_cases_fields_on_create_and_update(gql, runtime):
    template = await make_template(gql, subject="Card blocked")
    await add_field(
        gql,
        templateId=template,
        key="cardNumber",
        label="Card number",
        type="FIXED_FORMAT",
        pattern=r"\d{4}",
        mandatory=True,
    )
    ada = gid("Customer", await make_customer(runtime, "Ada"))

    missing = await gql(CASE_CREATE, {"input": {"customerIds": [ada], "templateId": template}})
    created = await gql(
        CASE_CREATE, {"input": {"customerIds": [ada], "templateId": template, "fields": {"cardNumber": "1234"}}}
    )
    case = created["caseCreate"]["case"]["id"]
    bad_update = await gql(CASE_UPDATE, {"input": {"id": case, "fields": {"cardNumber": "12"}}})
    # A case opened without a template keeps free fields.
    free = await gql(CASE_CREATE, {"input": {"customerIds": [ada], "subject": "Free", "fields": {"cardNumber": "x"}}})

    assert errors_of(missing, "caseCreate") == [("fields.cardNumber", "REQUIRED")]
    assert errors_of(bad_update, "caseUpdate") == [("fields.cardNumber", "INVALID")]
    assert free["caseCreate"]["errors"] == []
    assert await count(runtime, "cases") == 2


async def test_templates_in_use_are_deactivated_not_deleted(gql, runtime):
    template = await make_template(gql, subject="Card blocked")
    unused = await make_template(gql, name="Loan")
    ada = gid("Customer", await make_customer(runtime, "Ada"))
    await gql(CASE_CREATE, {"input": {"customerIds": [ada], "templateId": template}})

    refused = await gql(TEMPLATE_DELETE, {"id": template})
    deactivated = await gql(TEMPLATE_UPDATE, {"input": {"id": template, "active": False}})
    closed_door = await gql(CASE_CREATE, {"input": {"customerIds": [ada], "templateId": template}})
    deleted = await gql(TEMPLATE_DELETE, {"id": unused})
    listed = await gql("{ caseTemplates { name } all: caseTemplates(includeInactive: true) { name } }")

    assert errors_of(refused, "caseTemplateDelete") == [("id", "IN_USE")]
    assert deactivated["caseTemplateUpdate"]["caseTemplate"]["active"] is False
    assert errors_of(closed_door, "caseCreate") == [("templateId", "INACTIVE")]
    assert deleted["caseTemplateDelete"]["deletedId"] == unused
    assert listed == {"caseTemplates": [], "all": [{"name": "Credit card"}]}


async def test_a_templates_default_fields_are_checked_against_its_form(gql):
    template = await make_template(gql, subject="Card blocked")
    await add_field(gql, templateId=template, key="limit", label="Limit", type="NUMBER")

    refused = await gql(TEMPLATE_UPDATE, {"input": {"id": template, "fields": {"limit": "lots"}}})
    accepted = await gql(TEMPLATE_UPDATE, {"input": {"id": template, "fields": {"limit": "100"}}})

    assert errors_of(refused, "caseTemplateUpdate") == [("fields.limit", "INVALID")]
    assert accepted["caseTemplateUpdate"]["caseTemplate"]["fields"] == {"limit": 100}


async def test_only_supervisors_keep_forms_and_everyone_reads_them(gql, agent_token):
    await add_field(gql, key="notes", label="Notes", type="TEXT")

    refused = await gql.post(FIELD_CREATE, {"input": {"key": "x", "label": "X", "type": "TEXT"}}, token=agent_token)
    read = await gql("{ customerForm { key } }", token=agent_token)

    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert read == {"customerForm": [{"key": "notes"}]}


async def test_checking_a_form_costs_two_statements_whatever_its_size(gql, runtime, count_queries):
    await customer_form_with_every_type(gql)
    values = {"notes": "n", "children": 1, "accountType": "private", "postcode": "SW1A 1AA", "mobile": "07700 900123"}

    async with runtime.reading() as session:
        before = count_queries.count
        await checked_fields(session, template_id=None, values=values, stored=None, region="GB")
        # The form's fields, then the values its dropdowns offer.
        assert count_queries.count - before == 2


async def test_templates_and_dictionaries_are_nodes(gql):
    dictionary = await account_types(gql)
    template = await make_template(gql)

    found = await gql(
        "query($t: ID!, $d: ID!) { t: node(id: $t) { ... on CaseTemplate { name } } d: node(id: $d) { ... on Dictionary { name } } }",
        {"t": template, "d": dictionary},
    )

    assert found == {"t": {"name": "Credit card"}, "d": {"name": "Account types"}}


async def test_bad_field_updates_are_typed_errors_and_change_nothing(gql):
    dictionary = await account_types(gql)
    await add_field(gql, key="accountType", label="Account type", type="DROPDOWN", dictionaryId=dictionary)
    notes = await add_field(gql, key="notes", label="Notes", type="TEXT")
    before = await gql(CUSTOMER_FORM)
    nowhere = to_global_id("Dictionary", 999)

    missing = await gql(FIELD_UPDATE, {"input": {"id": notes, "type": "DROPDOWN", "dictionaryId": nowhere}})
    bad_pattern = await gql(FIELD_UPDATE, {"input": {"id": notes, "type": "FIXED_FORMAT", "pattern": "("}})

    assert errors_of(missing, "formFieldUpdate") == [("dictionaryId", "NOT_FOUND")]
    assert errors_of(bad_pattern, "formFieldUpdate") == [("pattern", "INVALID_PATTERN")]
    assert await gql(CUSTOMER_FORM) == before
