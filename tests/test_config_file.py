"""`casegraph config export|import`: reason codes, dictionaries, the customer form and case
templates as one YAML file; an import is checked whole and changes nothing when any part is refused."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from sqlalchemy import text

from app.auth import SYSTEM
from app.config_file import export_config, import_config
from app.errors import UserError
from app.services.reasons import seed_defaults
from tests.support import gid, make_customer
from tests.test_runtime import run_cli

ERRORS = "errors { field code }"
POOL_CREATE = "mutation($name: String!) { poolCreate(input: {name: $name}) { pool { id } } }"
CONFIG_TABLES = "reason_codes, dictionaries, dictionary_entries, form_fields, case_templates, pools"


async def build_configuration(gql) -> None:
    """Every kind of item, through the API as a supervisor would."""
    pool = (await gql(POOL_CREATE, {"name": "Cards"}))["poolCreate"]["pool"]["id"]

    async def run(mutation: str, input: dict) -> dict:
        name = mutation.split("(")[0]
        data = await gql(
            f"mutation($input: {name[0].upper() + name[1:]}Input!) {{ {name}(input: $input) {{ {ERRORS} }} }}",
            {"input": input},
        )
        assert data[name]["errors"] == [], data
        return data

    await run("reasonCodeCreate", {"code": "card-replaced", "description": "Card replaced", "category": "CLOSED"})
    codes = (await gql("{ reasonCodes { id code } }"))["reasonCodes"]
    rejected = next(c["id"] for c in codes if c["code"] == "rejected")
    await run("reasonCodeUpdate", {"id": rejected, "active": False, "description": "Refused"})
    await run(
        "dictionaryCreate",
        {
            "name": "Account types",
            "entries": [{"value": "private", "label": "Private"}, {"value": "legacy", "active": False}],
        },
    )
    await run(
        "dictionaryCreate", {"name": "Card kinds", "poolId": pool, "entries": [{"value": "debit"}, {"value": "credit"}]}
    )
    dictionaries = {d["name"]: d["id"] for d in (await gql("{ dictionaries { id name } }"))["dictionaries"]}
    await run(
        "formFieldCreate",
        {
            "key": "accountType",
            "label": "Account type",
            "type": "DROPDOWN",
            "dictionaryId": dictionaries["Account types"],
            "mandatory": True,
        },
    )
    await run(
        "formFieldCreate", {"key": "mobile", "label": "Mobile", "type": "PHONE", "helpText": "With the country code"}
    )
    template = await gql(
        "mutation($input: CaseTemplateCreateInput!) { caseTemplateCreate(input: $input) { caseTemplate { id } } }",
        {"input": {"name": "Card blocked", "subject": "Card blocked", "priority": "HIGH", "poolId": pool}},
    )
    template_id = template["caseTemplateCreate"]["caseTemplate"]["id"]
    await run(
        "formFieldCreate",
        {
            "templateId": template_id,
            "key": "cardKind",
            "label": "Card",
            "type": "DROPDOWN",
            "dictionaryId": dictionaries["Card kinds"],
        },
    )
    await run(
        "formFieldCreate",
        {
            "templateId": template_id,
            "key": "last4",
            "label": "Last digits",
            "type": "FIXED_FORMAT",
            "pattern": r"\d{4}",
            "patternMessage": "four digits",
        },
    )
    await run("caseTemplateUpdate", {"id": template_id, "fields": {"cardKind": "debit"}})


async def exported(runtime) -> str:
    async with runtime.reading() as session:
        return await export_config(session)


async def imported(runtime, document: str) -> dict[str, int]:
    async with runtime.transaction() as session:
        return await import_config(session, actor=SYSTEM, document=document)


async def test_the_file_round_trips_through_the_cli_onto_a_clean_database(gql, runtime, servers, tmp_path):
    await build_configuration(gql)
    file = tmp_path / "config.yaml"

    result = await asyncio.to_thread(run_cli, "config", "export", str(file), env=servers)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(file.read_text())
    assert list(document) == [
        "version",
        "reasonCodes",
        "dictionaries",
        "customerFields",
        "caseTemplates",
        "messageTemplates",
        "replyTemplates",
        "regions",
        "tat_policies",
        "user_groups",
        "workflows",
        "searchScreens",
    ]
    assert document["caseTemplates"][0]["form"][1] == {
        "key": "last4",
        "label": "Last digits",
        "type": "fixed_format",
        "pattern": r"\d{4}",
        "pattern_message": "four digits",
    }

    # A clean database: the default reason codes, and the pool the file names (from `casegraph mail import`).
    async with runtime.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {CONFIG_TABLES} RESTART IDENTITY CASCADE"))
        await seed_defaults(conn)
    await gql(POOL_CREATE, {"name": "Cards"})
    result = await asyncio.to_thread(run_cli, "config", "import", str(file), env=servers)

    assert result.returncode == 0, result.stderr
    assert await exported(runtime) == file.read_text()


async def test_an_imported_template_opens_cases_with_its_form(gql, runtime):
    await build_configuration(gql)
    document = await exported(runtime)
    await imported(runtime, document)  # importing the same file again changes nothing
    assert await exported(runtime) == document
    template = (await gql("{ caseTemplates { id } }"))["caseTemplates"][0]["id"]
    ada = gid("Customer", await make_customer(runtime, "Ada", fields={"accountType": "private"}))

    bad = await gql(
        f'mutation($c: ID!, $t: ID!) {{ caseCreate(input: {{customerIds: [$c], templateId: $t, fields: {{last4: "12"}}}}) {{ {ERRORS} }} }}',
        {"c": ada, "t": template},
    )
    assert bad["caseCreate"]["errors"] == [{"field": "fields.last4", "code": "INVALID"}]


def broken(document: str, change) -> str:
    data = yaml.safe_load(document)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (
            lambda d: d["caseTemplates"][0]["form"][1].update(pattern="[0-9"),
            "caseTemplates.0.form.1.pattern",
            "INVALID_PATTERN",
        ),
        (
            lambda d: d["caseTemplates"][0].update(fields={"cardKind": "gold"}),
            "caseTemplates.0.fields.cardKind",
            "NOT_IN_DICTIONARY",
        ),
        (lambda d: d["customerFields"][0].update(dictionary="Nope"), "customerFields.0.dictionary", "NOT_FOUND"),
        (lambda d: d["dictionaries"][1].update(pool="Nowhere"), "dictionaries.1.pool", "NOT_FOUND"),
        (lambda d: d["reasonCodes"][0].update(category="finished"), "reasonCodes.0.category", "INVALID"),
        (lambda d: d["reasonCodes"].append(dict(d["reasonCodes"][0])), "reasonCodes.11.code", "DUPLICATE"),
        (lambda d: d.update(version=2), "version", "INVALID"),
        (lambda d: d.update(teams=[]), "teams", "INVALID"),
        (lambda d: d.update(workflows=[{"code": "W", "tat_policy": "Nope"}]), "workflows.0.tat_policy", "NOT_FOUND"),
        (lambda d: d.update(dictionaries={"a": 1}), "dictionaries", "INVALID"),
    ],
)
async def test_a_refused_file_changes_nothing(gql, runtime, change, field, code):
    await build_configuration(gql)
    before = await exported(runtime)

    with pytest.raises(UserError) as refused:
        await imported(runtime, broken(before, change))

    assert (refused.value.field, refused.value.code) == (field, code)
    assert await exported(runtime) == before


async def test_what_the_file_no_longer_lists_goes_unless_it_is_in_use(gql, runtime):
    await build_configuration(gql)
    ada = gid("Customer", await make_customer(runtime, "Ada", fields={"accountType": "private"}))
    case = await gql(
        'mutation($c: ID!) { caseCreate(input: {customerIds: [$c], subject: "S"}) { case { id } } }',
        {"c": ada},
    )
    await gql(
        f'mutation($id: ID!) {{ caseClose(input: {{caseId: $id, reasonCode: "card-replaced"}}) {{ {ERRORS} }} }}',
        {"id": case["caseCreate"]["case"]["id"]},
    )
    before = await exported(runtime)

    # A code a case holds cannot leave the file (deactivate it there instead).
    without_code = broken(
        before, lambda d: d.update(reasonCodes=[c for c in d["reasonCodes"] if c["code"] != "card-replaced"])
    )
    with pytest.raises(UserError) as refused:
        await imported(runtime, without_code)
    assert (refused.value.field, refused.value.code) == ("reasonCodes[card-replaced].id", "IN_USE")
    assert await exported(runtime) == before

    # A dictionary leaves with the template whose form used it; sections left out stay as they are.
    def drop_template(d):
        d["caseTemplates"] = []
        d["dictionaries"] = d["dictionaries"][:1]
        del d["reasonCodes"]

    counts = await imported(runtime, broken(before, drop_template))
    after = yaml.safe_load(await exported(runtime))
    assert counts == {
        "dictionaries": 1,
        "customerFields": 2,
        "caseTemplates": 0,
        "messageTemplates": 0,
        "replyTemplates": 0,
        **{"regions": 0, "tat_policies": 0, "user_groups": 0, "workflows": 0, "searchScreens": 0},
    }
    assert (after["caseTemplates"], [d["name"] for d in after["dictionaries"]]) == ([], ["Account types"])
    assert after["reasonCodes"] == yaml.safe_load(before)["reasonCodes"]
