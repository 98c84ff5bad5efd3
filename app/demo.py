"""A realistic demo data set, bulk-loaded with COPY: customers, identifiers, cases, contacts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.runtime import create_runtime
from app.settings import get_settings

FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Mo",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Vik",
    "Wen",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Adams",
    "Brown",
    "Chen",
    "Davies",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Murphy",
    "Novak",
    "O'Brien",
    "Patel",
    "Quinn",
    "Rossi",
    "Smith",
    "Taylor",
    "Wilson",
]
SUBJECTS = [
    "Broadband keeps dropping",
    "Refund for order",
    "Change of address",
    "Billing question",
    "Router not delivered",
    "Complaint about engineer visit",
    "Upgrade request",
    "Cancel contract",
    "Password reset",
    "Wrong charge on invoice",
    "Moving house",
    "Speed slower than promised",
]
CHANNELS = ["email", "email", "phone", "phone", "chat", "sms", "web"]
STATUSES = ["new", "open", "open", "pending", "resolved", "closed", "closed"]
PRIORITIES = ["low", "normal", "normal", "normal", "high", "urgent"]


async def _reserve_ids(conn: AsyncConnection, table: str, count: int) -> list[int]:
    rows = await conn.execute(
        text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)"), {"n": count}
    )
    return [r[0] for r in rows]


async def _copy(conn: AsyncConnection, table: str, columns: list[str], records: list[tuple]) -> None:
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table, columns=columns, records=records)


async def generate(
    conn: AsyncConnection,
    *,
    customers: int,
    cases_per_customer: float = 3,
    contacts_per_customer: float = 20,
    fixed_shape: bool = False,
    seed: int = 42,
    progress=None,
) -> list[int]:
    """Insert `customers` customers with identifiers, cases and contacts; returns the customer ids.

    With `fixed_shape` every customer gets exactly `cases_per_customer` cases and
    `contacts_per_customer` contacts spread evenly over them (the benchmark's shape);
    otherwise the numbers vary around those averages.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    batch = 1000
    done: list[int] = []
    for start in range(0, customers, batch):
        size = min(batch, customers - start)
        customer_ids = await _reserve_ids(conn, "customers", size)
        customer_rows, identifier_rows, case_rows, link_rows, contact_rows = [], [], [], [], []
        case_counts = [
            int(cases_per_customer) if fixed_shape else max(0, round(rng.gauss(cases_per_customer, 1.5)))
            for _ in customer_ids
        ]
        case_ids = iter(await _reserve_ids(conn, "cases", sum(case_counts)))
        for customer_id, n_cases in zip(customer_ids, case_counts, strict=True):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            created = now - timedelta(days=rng.randint(30, 900))
            email = f"{name.lower().replace(' ', '.').replace(chr(39), '')}.{customer_id}@example.com"
            phone = f"+4477009{customer_id % 100000:05d}"
            customer_rows.append(
                (customer_id, name, "{}" if rng.random() > 0.1 else '{"vip": true}', "active", created, created)
            )
            identifier_rows += [(customer_id, "email", email, created), (customer_id, "phone", phone, created)]
            if rng.random() < 0.5:
                identifier_rows.append((customer_id, "account_id", f"ACC{customer_id:08d}", created))
            mine = []
            for _ in range(n_cases):
                case_id = next(case_ids)
                mine.append(case_id)
                case_rows.append(
                    (case_id, rng.choice(SUBJECTS), rng.choice(STATUSES), rng.choice(PRIORITIES), created, created)
                )
                link_rows.append((case_id, customer_id, True))
            n_contacts = (
                int(contacts_per_customer) if fixed_shape else max(1, round(rng.gauss(contacts_per_customer, 6)))
            )
            for i in range(n_contacts):
                occurred = created + timedelta(minutes=rng.randint(0, 60 * 24 * 30))
                case_id = mine[i % len(mine)] if mine and (fixed_shape or rng.random() < 0.85) else None
                channel = rng.choice(CHANNELS)
                subject = rng.choice(SUBJECTS)
                contact_rows.append(
                    (
                        channel,
                        rng.choice(["inbound", "inbound", "outbound"]),
                        occurred,
                        customer_id,
                        case_id,
                        subject,
                        f"{subject}. Customer {name} got in touch by {channel}.",
                        email if channel == "email" else phone,
                        "[]",
                        "{}",
                        "{}",
                        False,
                    )
                )
        await _copy(
            conn,
            "customers",
            ["id", "name", "fields", "status", "created_at", "last_activity_at"],
            [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in customer_rows],
        )
        await _copy(conn, "customer_identifiers", ["customer_id", "kind", "value", "created_at"], identifier_rows)
        await _copy(conn, "cases", ["id", "subject", "status", "priority", "created_at", "updated_at"], case_rows)
        await _copy(conn, "case_customers", ["case_id", "customer_id", "is_primary"], link_rows)
        await _copy(
            conn,
            "contacts",
            [
                "channel",
                "direction",
                "occurred_at",
                "customer_id",
                "case_id",
                "subject",
                "text",
                "from_address",
                "to_addresses",
                "headers",
                "payload",
                "needs_review",
            ],
            contact_rows,
        )
        done += customer_ids
        if progress:
            progress(size)
    await conn.execute(text("ANALYZE"))
    return done


async def load_demo(*, customers: int, console: Console) -> None:
    runtime = create_runtime(get_settings(), pool_size=1)
    try:
        with Progress(console=console) as bar:
            task = bar.add_task("Loading demo customers", total=customers)
            async with runtime.engine.begin() as conn:
                await generate(conn, customers=customers, progress=lambda n: bar.advance(task, n))
        console.print(f"Loaded {customers} customers with their cases and contacts.")
    finally:
        await runtime.close()
