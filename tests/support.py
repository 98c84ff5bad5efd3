"""Shared builders for the tests of corrections, merges, archiving and GDPR: records made through the services, and table snapshots."""

from __future__ import annotations

from sqlalchemy import text

from app.auth import Actor
from app.contact_data import ContactData
from app.services import cases as case_service
from app.services import contacts as contact_service
from app.services import customers as customer_service
from app.services.customers import IdentifierInput
from schema.ids import to_global_id

AGENT = Actor(user_id=None, name="agent-test", role="agent")
SUPERVISOR = Actor(user_id=None, name="supervisor-test", role="supervisor")
INTEGRATOR = Actor(user_id=None, name="integrator-test", role="integrator")

SNAPSHOT_TABLES = {
    "customers": "SELECT id, number, name, fields, status, merged_into_id, archived_at FROM customers ORDER BY id",
    "identifiers": "SELECT id, customer_id, kind, value FROM customer_identifiers ORDER BY id",
    "cases": "SELECT id, subject, status, reason_code, parent_id, merged_into_id, archived_at FROM cases ORDER BY id",
    "links": "SELECT case_id, customer_id, is_primary FROM case_customers ORDER BY case_id, customer_id",
    "contacts": "SELECT id, customer_id, case_id, subject, text FROM contacts ORDER BY id",
    "merges": "SELECT id, undone_at FROM customer_merges ORDER BY id",
    "audit": "SELECT count(*) FROM audit_events",
}


def gid(type_name: str, db_id: int) -> str:
    return to_global_id(type_name, db_id)


async def snapshot(runtime) -> dict[str, list]:
    async with runtime.engine.connect() as conn:
        return {name: [tuple(r) for r in await conn.execute(text(sql))] for name, sql in SNAPSHOT_TABLES.items()}


async def make_customer(runtime, name: str | None = None, *, emails=(), phones=(), fields=None) -> int:
    async with runtime.transaction() as session:
        customer = await customer_service.create_customer(
            session,
            actor=AGENT,
            name=name,
            identifiers=[IdentifierInput("email", e) for e in emails] + [IdentifierInput("phone", p) for p in phones],
            fields=fields,
            region="GB",
        )
        return customer.id


async def make_case(
    runtime, customer_ids: list[int], subject: str = "Broken boiler", parent_id: int | None = None
) -> int:
    async with runtime.transaction() as session:
        case = await case_service.create_case(
            session, actor=AGENT, subject=subject, customer_ids=customer_ids, parent_id=parent_id
        )
        return case.id


async def make_contact(
    runtime,
    *,
    customer_id: int | None = None,
    case_id: int | None = None,
    text_body: str = "hello",
    from_address: str | None = None,
) -> int:
    async with runtime.transaction() as session:
        contact = await contact_service.create_contact(
            session,
            actor=AGENT,
            data=ContactData(
                channel="email",
                direction="inbound",
                subject="Re: boiler",
                text=text_body,
                from_address=from_address,
                headers={"Message-ID": f"<{text_body}@x>"},
                payload={"raw": text_body},
            ),
            customer_id=customer_id,
            case_id=case_id,
        )
        return contact.id


async def scalar(runtime, sql: str, **params):
    async with runtime.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def rows(runtime, sql: str, **params) -> list[tuple]:
    async with runtime.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql), params)]
