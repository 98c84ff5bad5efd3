"""Archiving by hand and by rules: archive, restore, preview, the daily sweep, expiry by delete or anonymise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.services import archive
from jobs import worker
from tests.support import gid, make_case, make_contact, make_customer, rows, scalar, snapshot

ARCHIVE = "mutation($input: CustomerArchiveInput!) { customerArchive(input: $input) { customer { id status } errors { code } } }"
RESTORE = "mutation($input: CustomerArchiveInput!) { customerRestore(input: $input) { customer { id status } errors { code } } }"
CUSTOMERS = "{ customers(first: 50) { edges { node { id } } } }"
CUSTOMER = "query($id: ID!) { customer(id: $id) { id status } }"
RULE_CREATE = """
mutation($input: ArchiveRuleCreateInput!) {
  archiveRuleCreate(input: $input) { rule { id name entity inactivityDays exemptWhen retentionDays expiryAction } errors { field code } }
}
"""
PREVIEW = (
    "query($id: ID!) { archiveRulePreview(id: $id) { archiveCount expireCount archiveSampleIds expireSampleIds } }"
)
NOW = datetime.now(UTC)


async def _age(runtime, customer_id: int, days: int) -> None:
    async with runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("UPDATE customers SET last_activity_at = :t, created_at = :t WHERE id = :c"),
            {"t": NOW - timedelta(days=days), "c": customer_id},
        )


async def _archived_days_ago(runtime, customer_id: int, days: int) -> None:
    async with runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("UPDATE customers SET archived_at = :t WHERE id = :c"),
            {"t": NOW - timedelta(days=days), "c": customer_id},
        )


async def test_archive_and_restore_a_customer(gql, runtime):
    ada = await make_customer(runtime, "Ada")
    archived = await gql(ARCHIVE, {"input": {"customerId": gid("Customer", ada)}})
    assert archived["customerArchive"]["customer"]["status"] == "ARCHIVED"
    assert (await gql(CUSTOMERS))["customers"]["edges"] == []
    assert (await gql(CUSTOMER, {"id": gid("Customer", ada)}))["customer"]["status"] == "ARCHIVED"
    twice = await gql(ARCHIVE, {"input": {"customerId": gid("Customer", ada)}})
    assert [e["code"] for e in twice["customerArchive"]["errors"]] == ["WRONG_STATUS"]

    restored = await gql(RESTORE, {"input": {"customerId": gid("Customer", ada)}})
    assert restored["customerRestore"]["customer"]["status"] == "ACTIVE"
    assert len((await gql(CUSTOMERS))["customers"]["edges"]) == 1
    not_archived = await gql(RESTORE, {"input": {"customerId": gid("Customer", ada)}})
    assert [e["code"] for e in not_archived["customerRestore"]["errors"]] == ["WRONG_STATUS"]


async def test_invalid_rules_are_refused(gql, runtime):
    before = await snapshot(runtime)
    negative = await gql(RULE_CREATE, {"input": {"name": "r", "entity": "CUSTOMER", "inactivityDays": -1}})
    assert [(e["field"], e["code"]) for e in negative["archiveRuleCreate"]["errors"]] == [("inactivityDays", "INVALID")]
    not_object = await gql(
        RULE_CREATE, {"input": {"name": "r", "entity": "CUSTOMER", "inactivityDays": 1, "exemptWhen": [1]}}
    )
    assert [e["code"] for e in not_object["archiveRuleCreate"]["errors"]] == ["INVALID"]
    assert await snapshot(runtime) == before
    assert await scalar(runtime, "SELECT count(*) FROM archive_rules") == 0


async def test_rules_need_the_supervisor_role(gql, runtime, agent_token):
    response = await gql.post(
        RULE_CREATE, {"input": {"name": "r", "entity": "CUSTOMER", "inactivityDays": 1}}, token=agent_token
    )
    assert response.json()["errors"]
    assert await scalar(runtime, "SELECT count(*) FROM archive_rules") == 0


async def test_preview_then_sweep_archives_inactive_customers_but_keeps_exempt_ones(gql, runtime):
    stale = await make_customer(runtime, "Stale")
    stale_vip = await make_customer(runtime, "Stale VIP", fields={"vip": True})
    fresh = await make_customer(runtime, "Fresh")
    await _age(runtime, stale, 400)
    await _age(runtime, stale_vip, 400)
    await _age(runtime, fresh, 10)
    rule = await gql(
        RULE_CREATE,
        {
            "input": {
                "name": "Inactive a year",
                "entity": "CUSTOMER",
                "inactivityDays": 365,
                "exemptWhen": {"vip": True},
                "retentionDays": 30,
                "expiryAction": "DELETE",
            }
        },
    )
    rule_id = rule["archiveRuleCreate"]["rule"]["id"]

    preview = (await gql(PREVIEW, {"id": rule_id}))["archiveRulePreview"]
    assert preview == {
        "archiveCount": 1,
        "expireCount": 0,
        "archiveSampleIds": [gid("Customer", stale)],
        "expireSampleIds": [],
    }

    result = await archive.sweep(runtime, batch_size=1)
    assert (result.archived, result.expired) == (1, 0)
    assert await rows(runtime, "SELECT id, status FROM customers ORDER BY id") == [
        (stale, "archived"),
        (stale_vip, "active"),
        (fresh, "active"),
    ]
    assert await rows(
        runtime,
        "SELECT actor_name, action FROM audit_events WHERE entity_id = :c AND action = 'customer.archive'",
        c=stale,
    ) == [("system", "customer.archive")]
    again = await archive.sweep(runtime)
    assert again.archived == 0


async def test_expiry_deletes_a_customer_with_their_own_cases_and_hands_shared_cases_on(gql, runtime):
    gone = await make_customer(runtime, "Gone", emails=["gone@example.com"])
    stays = await make_customer(runtime, "Stays")
    own_case = await make_case(runtime, [gone])
    shared_case = await make_case(runtime, [gone, stays])
    await make_contact(runtime, customer_id=gone, case_id=own_case)
    await make_contact(runtime, customer_id=gone, case_id=shared_case)
    kept_contact = await make_contact(runtime, customer_id=stays, case_id=shared_case)
    async with runtime.transaction() as session:
        from tests.support import SUPERVISOR

        await archive.create_archive_rule(
            session,
            actor=SUPERVISOR,
            name="expire",
            entity="customer",
            inactivity_days=3650,
            retention_days=30,
            expiry_action="delete",
        )
        await archive.archive_customer(session, actor=SUPERVISOR, customer_id=gone)
    await _archived_days_ago(runtime, gone, 31)

    result = await archive.sweep(runtime)

    assert result.expired == 1
    assert await rows(runtime, "SELECT id FROM customers") == [(stays,)]
    assert await rows(runtime, "SELECT id FROM cases") == [(shared_case,)]
    assert await rows(runtime, "SELECT customer_id, is_primary FROM case_customers") == [(stays, True)]
    assert await rows(runtime, "SELECT id FROM contacts") == [(kept_contact,)]
    assert await scalar(runtime, "SELECT count(*) FROM customer_identifiers") == 0
    # The deleted records' audit trail keeps who did what and when, not what they held.
    assert (
        await rows(
            runtime,
            "SELECT entity_type, action FROM audit_events WHERE (before IS NOT NULL OR after IS NOT NULL) "
            "AND (entity_type = 'contact' AND entity_id <> :kept OR entity_type = 'case' AND entity_id = :own "
            "OR entity_type = 'customer' AND entity_id = :gone) AND action NOT LIKE '%.delete'",
            kept=kept_contact,
            own=own_case,
            gone=gone,
        )
        == []
    )


async def test_expiry_can_anonymise_instead(runtime):
    from tests.support import SUPERVISOR

    ada = await make_customer(runtime, "Ada", emails=["ada@example.com"])
    contact = await make_contact(runtime, customer_id=ada, text_body="my address is 1 Main St")
    async with runtime.transaction() as session:
        await archive.create_archive_rule(
            session,
            actor=SUPERVISOR,
            name="anon",
            entity="customer",
            inactivity_days=3650,
            retention_days=0,
            expiry_action="anonymise",
        )
        await archive.archive_customer(session, actor=SUPERVISOR, customer_id=ada)
    await _archived_days_ago(runtime, ada, 1)

    await archive.sweep(runtime)

    assert await rows(runtime, "SELECT name, status FROM customers") == [(None, "erased")]
    assert await rows(runtime, "SELECT text, customer_id FROM contacts WHERE id = :c", c=contact) == [(None, ada)]


async def test_case_rules_archive_closed_cases(runtime):
    from sqlalchemy import text

    from tests.support import SUPERVISOR

    ada = await make_customer(runtime, "Ada")
    closed = await make_case(runtime, [ada])
    open_case = await make_case(runtime, [ada])
    async with runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE cases SET status = 'closed' WHERE id = :c"), {"c": closed})
        await conn.execute(text("UPDATE cases SET updated_at = now() - interval '100 days'"))
    async with runtime.transaction() as session:
        await archive.create_archive_rule(session, actor=SUPERVISOR, name="cases", entity="case", inactivity_days=90)

    result = await archive.sweep(runtime)

    assert result.archived == 1
    assert await rows(runtime, "SELECT id FROM cases WHERE archived_at IS NOT NULL") == [(closed,)]
    assert await rows(runtime, "SELECT id FROM cases WHERE archived_at IS NULL") == [(open_case,)]


async def test_the_daily_job_runs_the_sweep(runtime):
    assert any(job.coroutine is worker.archive_sweep for job in worker.WorkerSettings.cron_jobs)
    stale = await make_customer(runtime, "Stale")
    await _age(runtime, stale, 40)
    async with runtime.transaction() as session:
        from tests.support import SUPERVISOR

        await archive.create_archive_rule(
            session, actor=SUPERVISOR, name="month", entity="customer", inactivity_days=30
        )
    assert await worker.archive_sweep({"runtime": runtime}) == {"archived": 1, "expired": 0, "batches": 2}


async def test_case_anonymisation_expires_each_case_once_and_clears_its_contacts_trail(runtime):
    from sqlalchemy import text

    from tests.support import SUPERVISOR

    ada = await make_customer(runtime, "Ada")
    case = await make_case(runtime, [ada], "Boiler at 12 Main St")
    await make_contact(runtime, customer_id=ada, case_id=case, text_body="I live at 12 Main St")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE audit_events SET after = after || '{\"note\": \"12 Main St\"}' WHERE entity_type = 'contact'")
        )
        await conn.execute(
            text("UPDATE cases SET status = 'closed', archived_at = now() - interval '40 days' WHERE id = :c"),
            {"c": case},
        )
    async with runtime.transaction() as session:
        await archive.create_archive_rule(
            session,
            actor=SUPERVISOR,
            name="cases",
            entity="case",
            inactivity_days=90,
            retention_days=30,
            expiry_action="anonymise",
        )

    first = await archive.sweep(runtime)
    before_second = await snapshot(runtime)
    second = await archive.sweep(runtime)

    assert (first.expired, second.expired) == (1, 0)
    assert await snapshot(runtime) == before_second
    assert await scalar(runtime, "SELECT count(*) FROM audit_events WHERE action = 'case.anonymise'") == 1
    assert await rows(runtime, "SELECT subject FROM cases") == [("[anonymised]",)]
    trail = await rows(
        runtime, "SELECT action, before, after FROM audit_events WHERE entity_type IN ('case', 'contact')"
    )
    assert "Main St" not in repr(trail)
    preview = await _preview(runtime)
    assert (preview.expire_count, preview.expire_sample) == (0, [])


async def _preview(runtime):
    from sqlalchemy import text

    async with runtime.reading() as session:
        rule_id = await session.scalar(text("SELECT id FROM archive_rules"))
        return await archive.preview_archive_rule(session, rule_id=rule_id)


async def test_preview_counts_every_candidate_and_samples_the_first(runtime):
    from sqlalchemy import text

    from tests.support import SUPERVISOR

    ids = [await make_customer(runtime, f"C{i}") for i in range(25)]
    await make_customer(runtime, "Kept", fields={"vip": True})
    async with runtime.engine.begin() as conn:
        # Older the lower the id: 400 days for the first, 376 for the last.
        await conn.execute(
            text(
                "UPDATE customers SET last_activity_at = now() - make_interval(days => 400 - (id - (SELECT min(id) FROM customers))::int)"
            )
        )
    async with runtime.transaction() as session:
        await archive.create_archive_rule(
            session, actor=SUPERVISOR, name="year", entity="customer", inactivity_days=365, exempt_when={"vip": True}
        )

    preview = await _preview(runtime)

    assert preview.archive_count == 25
    assert preview.archive_sample == ids[: archive.PREVIEW_SAMPLE]
    assert (preview.expire_count, preview.expire_sample) == (0, [])
