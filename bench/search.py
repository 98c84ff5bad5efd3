"""Benchmark: customer and case search over HTTP against the same search run directly.

Generates customers with realistic names (first names and surnames of several countries, accents
included), an email, a phone and an account id each, a case for every second customer and five
contacts per customer, a contract number in a searchable custom field. Case and contact text is
drawn from a 6,000-word contact-centre vocabulary with Zipf frequencies (`_vocabulary.py`). It
then measures name (misspelt, half reversed), phone,
email, custom-field (a filter by contract, no query) and full-text case searches: p50/p95 over
HTTP (`casegraph api`, one connection at a time) and of the same service call run in-process on
one session (the SQL without HTTP and GraphQL). Case searches are what an agent types to find a
conversation again, taken from random contacts: its rarest word and a common one, its rarest word
alone, or two of its common words. The last line is one JSON object.

    python bench/search.py [--customers 100000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time

from _common import embedded_servers, free_port, http_request, run_load, server_process
from _vocabulary import FUNCTION, RANK, VOCABULARY, ZIPF_WORD

FIRST = [
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Oliver",
    "Amelia",
    "George",
    "Isla",
    "Harry",
    "Ava",
    "Noah",
    "Mia",
    "Jack",
    "Emily",
    "Leo",
    "Sophie",
    "Arthur",
    "Grace",
    "Muhammad",
    "Freya",
    "Oscar",
    "Lily",
    "Jacob",
    "Ella",
    "Mohammed",
    "Fatima",
    "Ahmed",
    "Aisha",
    "Ali",
    "Zainab",
    "Omar",
    "Maryam",
    "Wei",
    "Li",
    "Hiroshi",
    "Yuki",
    "Sanjay",
    "Priya",
    "Raj",
    "Ananya",
    "José",
    "María",
    "Zoë",
    "Chloé",
    "Élodie",
    "François",
    "Jürgen",
    "Søren",
    "Åsa",
    "Björn",
    "Małgorzata",
    "Łukasz",
    "Siobhán",
    "Seán",
    "Niamh",
    "Aoife",
    "Dmitri",
    "Olga",
    "Giulia",
    "Matteo",
    "Lucía",
    "Mateo",
    "Inês",
    "João",
    "Ngozi",
    "Chinedu",
    "Kwame",
    "Ama",
    "Ada",
    "Alan",
]
LAST = [
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Müller",
    "Schmidt",
    "García",
    "Fernández",
    "Núñez",
    "Álvarez",
    "Rodríguez",
    "Dubois",
    "Lefèvre",
    "Rossi",
    "Ferrari",
    "Kowalski",
    "Nowak",
    "Ivanov",
    "Nakamura",
    "Tanaka",
    "Wang",
    "Zhang",
    "Chen",
    "Nguyen",
    "Okafor",
    "Mensah",
    "O'Brien",
    "Ó'Súilleabháin",
    "Lovelace",
    "Hopper",
    "Ångström",
    "Øberg",
]

NAME_QUERY = """query($q: String!) { customerSearch(query: $q, first: 10) {
  edges { node { matchedBy customer { number name } } } } }"""
FIELD_QUERY = """query($q: JSON!) { customerSearch(filters: {fields: [{key: "contract", value: $q}]}, first: 10) {
  edges { node { customer { number name } } } } }"""
CASE_QUERY = """query($q: String!) { caseSearch(query: $q, first: 10) {
  edges { node { snippet case { reference subject } } } } }"""

GENERATE = [
    statement.replace("{ZIPF_WORD}", ZIPF_WORD)
    for statement in [
        "SELECT setseed(0.42)",
        """INSERT INTO form_fields (key, label, type, searchable, position)
       VALUES ('contract', 'Contract', 'text', true, 0), ('plan', 'Plan', 'text', true, 1)""",
        """INSERT INTO customers (name, created_at, last_activity_at, fields)
       SELECT f[1 + floor(random() * array_length(f, 1))::int] || ' ' || l[1 + floor(random() * array_length(l, 1))::int],
              now() - (i % 2000) * interval '1 day', now() - (i % 500) * interval '1 hour',
              jsonb_build_object('contract', 'K-' || i, 'plan', (ARRAY['basic', 'plus', 'pro', 'gold'])[1 + i % 4])
       FROM generate_series(1, :n) i, (SELECT CAST(:first AS text[]) AS f, CAST(:last AS text[]) AS l) names""",
        """INSERT INTO customer_identifiers (customer_id, kind, value)
       SELECT id, 'email', replace(casegraph_fold(name), ' ', '.') || '.' || id || '@example.com' FROM customers
       UNION ALL SELECT id, 'phone', '+4479' || lpad(id::text, 8, '0') FROM customers
       UNION ALL SELECT id, 'account_id', 'ACC-' || id FROM customers""",
        """INSERT INTO cases (subject, description, status, priority)
       SELECT (SELECT string_agg(word, ' ') FROM (SELECT {ZIPF_WORD} AS word FROM generate_series(1, 4) WHERE i > 0) words),
              (SELECT string_agg(word, ' ') FROM (SELECT {ZIPF_WORD} AS word FROM generate_series(1, 25) WHERE i > 0) words),
              (ARRAY['new','open','pending','resolved','closed'])[1 + i % 5], 'normal'
       FROM generate_series(1, :n / 2) i, (SELECT CAST(:words AS text[]) AS w) vocabulary""",
        "INSERT INTO case_customers (case_id, customer_id, is_primary) SELECT id, id * 2, true FROM cases",
        """INSERT INTO contacts (channel, direction, occurred_at, customer_id, case_id, subject, text)
       SELECT 'email', 'inbound', now() - (i % 1000) * interval '1 hour', c.id,
              CASE WHEN c.id % 2 = 0 THEN c.id / 2 END,
              (SELECT string_agg(word, ' ') FROM (SELECT {ZIPF_WORD} AS word FROM generate_series(1, 3) WHERE i > 0) words),
              (SELECT string_agg(word, ' ') FROM (SELECT {ZIPF_WORD} AS word FROM generate_series(1, 30) WHERE i > 0) words)
       FROM customers c, generate_series(1, 5) i, (SELECT CAST(:words AS text[]) AS w) vocabulary""",
    ]
]


async def prepare(customers: int) -> tuple[str, list[tuple[int, str, str]], list[str]]:
    from sqlalchemy import text

    from app.runtime import create_runtime
    from app.services.auth import create_token
    from app.services.search import trim_recent_cases, trim_recent_contacts
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=1)
    try:
        params = {"n": customers, "first": FIRST, "last": LAST, "words": VOCABULARY}
        for statement in GENERATE:
            async with runtime.engine.begin() as conn:
                started = time.monotonic()
                await conn.execute(text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
                print(f"  {' '.join(statement.split()[:3])[:40]:<40} {time.monotonic() - started:6.1f}s")
        # As the worker's search_trim keeps them: only the newest cases and contacts in the recent indexes.
        async with runtime.transaction() as session:
            started = time.monotonic()
            trimmed = await trim_recent_cases(session) + await trim_recent_contacts(session)
            print(f"  {f'trim recent cases and contacts ({trimmed})':<40} {time.monotonic() - started:6.1f}s")
        # Measured in the steady state autovacuum keeps tables in (statistics, visibility, GIN
        # pending lists merged), not while it works through the load in the background.
        async with runtime.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            started = time.monotonic()
            await conn.execute(text("VACUUM ANALYZE"))
            print(f"  {'VACUUM ANALYZE':<40} {time.monotonic() - started:6.1f}s")
            # Nor while the checkpointer writes out the load (the first searches took twice as long).
            started = time.monotonic()
            await conn.execute(text("CHECKPOINT"))
            print(f"  {'CHECKPOINT':<40} {time.monotonic() - started:6.1f}s")
        async with runtime.engine.connect() as conn:
            sample = [
                tuple(r)
                for r in await conn.execute(
                    text("SELECT id, name, fields ->> 'contract' FROM customers ORDER BY random() LIMIT 2000")
                )
            ]
            documents = [
                row[0]
                for row in await conn.execute(
                    text(
                        "SELECT concat_ws(' ', subject, text) FROM contacts WHERE case_id IS NOT NULL "
                        "ORDER BY random() LIMIT 2000"
                    )
                )
            ]
        async with runtime.transaction() as session:
            token = await create_token(session, name="bench", role="agent")
    finally:
        await runtime.close()
    return token, sample, documents


def make_queries(sample: list[tuple[int, str, str]], documents: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Per kind, (document, query) pairs as an agent would type them."""
    rng = random.Random(7)

    def misspelt(name: str) -> str:
        words = name.split()
        if rng.random() < 0.5:
            words.reverse()  # "Lovelace Ada"
        word = rng.randrange(len(words))
        w = words[word]
        if len(w) > 4:
            i = rng.randrange(1, len(w) - 1)
            words[word] = w[:i] + w[i + 1 :]  # a letter dropped
        return " ".join(words).lower()

    def national(customer_id: int) -> str:
        digits = f"79{customer_id:08d}"
        return f"0{digits[:4]} {digits[4:]}"  # 07900 000123

    def email(customer_id: int, name: str) -> str:
        import unicodedata

        folded = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).lower()
        return f"{folded.replace(' ', '.')}.{customer_id}@example.com".upper()

    def words_typed(i: int, document: str) -> str:
        """What an agent types to find this conversation again: its rarest word and a common one
        (half the queries), its rarest word alone (a product or code: a quarter), or two of its
        common words ("refund delivery": a quarter, the many-matches case)."""
        words = sorted({w for w in document.split() if w not in FUNCTION}, key=RANK.__getitem__)
        if len(words) < 2:
            return words[0] if words else document.split()[0]
        if i % 4 in (0, 1):
            return f"{words[-1]} {words[0]}"
        if i % 4 == 2:
            return words[-1]
        return f"{words[0]} {words[1]}"

    return {
        "name": [(NAME_QUERY, misspelt(n)) for _, n, _ in sample],
        "phone": [(NAME_QUERY, national(i)) for i, _, _ in sample],
        "email": [(NAME_QUERY, email(i, n)) for i, n, _ in sample],
        "custom_field": [(FIELD_QUERY, contract) for _, _, contract in sample],
        "case_text": [(CASE_QUERY, words_typed(i, document)) for i, document in enumerate(documents)],
    }


async def direct(kind: str, queries: list[tuple[str, str]], seconds: float) -> list[float]:
    """The same search as the API runs, called in-process on one session: the floor."""
    from app.runtime import create_runtime
    from app.services import search
    from app.settings import load_settings

    runtime = create_runtime(load_settings(), pool_size=1)
    latencies: list[float] = []
    try:
        async with runtime.reading() as session:
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at:
                _, q = random.choice(queries)
                started = time.perf_counter()
                if kind == "case_text":
                    await search.search_cases(session, query=q, first=10)
                elif kind == "custom_field":
                    filters = search.CustomerFilters(fields=(search.FieldFilter("contract", q),))
                    await search.search_customers(session, query=None, filters=filters, first=10, region="GB")
                else:
                    await search.search_customers(session, query=q, first=10, region="GB")
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await runtime.close()
    return latencies


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()

    with embedded_servers() as urls:
        started = time.monotonic()
        print(f"generating {args.customers} customers, {args.customers * 5} contacts")
        token, sample, documents = asyncio.run(prepare(args.customers))
        print(f"loaded in {time.monotonic() - started:.1f}s")
        queries = make_queries(sample, documents)
        results: dict[str, dict[str, float]] = {}
        port = free_port()
        api = [sys.executable, "-m", "app.cli", "api", "--port", str(port), "--no-access-log"]

        def requests(pairs: list[tuple[str, str]]):
            def request() -> bytes:
                document, q = random.choice(pairs)
                body = json.dumps({"query": document, "variables": {"q": q}}).encode()
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                return http_request("POST", "/graphql", body, headers)

            return request

        with server_process(api, port, urls):
            # Every kind once before any is measured: the server's connections have then prepared
            # each statement, so the first kind measured does not carry the server's warm-up.
            for pairs in queries.values():
                asyncio.run(run_load(port, requests(pairs), concurrency=1, seconds=2))
            for kind, pairs in queries.items():
                http = asyncio.run(run_load(port, requests(pairs), concurrency=1, seconds=args.seconds)).latencies_ms
                floor = asyncio.run(direct(kind, pairs, args.seconds))
                results[kind] = {
                    "http_p50": percentile(http, 50),
                    "http_p95": percentile(http, 95),
                    "direct_p50": percentile(floor, 50),
                    "direct_p95": percentile(floor, 95),
                }

    print(f"{'':12} {'http p50':>9} {'http p95':>9} {'direct p50':>11} {'direct p95':>11} {'p95 ratio':>10}")
    for kind, r in results.items():
        ratio = r["http_p95"] / r["direct_p95"]
        print(
            f"{kind:12} {r['http_p50']:9.2f} {r['http_p95']:9.2f} {r['direct_p50']:11.2f} {r['direct_p95']:11.2f} {ratio:10.2f}"
        )
    summary = {"customers": args.customers, "contacts": args.customers * 5}
    for kind, r in results.items():
        summary[f"{kind}_p50_ms"] = round(r["http_p50"], 2)
        summary[f"{kind}_p95_ms"] = round(r["http_p95"], 2)
        summary[f"{kind}_direct_p95_ms"] = round(r["direct_p95"], 2)
        summary[f"{kind}_p95_ratio"] = round(r["http_p95"] / r["direct_p95"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
