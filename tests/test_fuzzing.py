"""Fuzzing with schemathesis: requests generated from the committed schema for every query and
mutation, sent with an admin's, an agent's and an integrator's token to a live API process. Whatever
it sends, no answer is a server error or a masked "Unexpected error."."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import graphql
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from schema.ids import to_global_id
from tests.conftest import _token
from tests.support import make_case, make_contact, make_customer

SCHEMA = Path(__file__).parents[1] / "schema" / "schema.graphql"
EXAMPLES = int(os.environ.get("CASEGRAPH_FUZZ_EXAMPLES", "25"))  # per operation; each is sent once per role
ROLES = ("admin", "agent", "integrator")


def _object(fields: list[tuple[str, graphql.ValueNode]]) -> graphql.ObjectValueNode:
    return nodes.Object([graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v) for k, v in fields])


# Any JSON value, objects or not, with integers of any size and any text (NUL characters included).
JSON = st.recursive(
    st.just(nodes.Null) | st.booleans().map(nodes.Boolean) | st.integers().map(nodes.Int) | st.text().map(nodes.String),
    lambda inner: (
        st.lists(inner, max_size=4).map(nodes.List)
        | st.lists(st.tuples(st.from_regex(r"\A[A-Za-z_]\w{0,8}\Z"), inner), max_size=4, unique_by=lambda f: f[0]).map(
            _object
        )
    ),
    max_leaves=12,
)
# Any time in the calendar with any offset, including ones that fall outside it in UTC.
DATETIME = st.builds(
    "{}T{}{}".format, st.dates(), st.times(), st.sampled_from(["Z", "+00:00", "+05:30", "+14:00", "-14:00", ""])
)
# Global ids of records that exist (the test stores a few; ids restart at 1), and ones that only look like ids.
NODE_TYPES = ["Customer", "Case", "Contact", "CustomerIdentifier", "User", "CustomerMerge", "RecognitionRule"]
NODE_TYPES += ["PromotionRule", "ArchiveRule", "AuditEvent"]
ID = st.one_of(
    st.builds(to_global_id, st.sampled_from(NODE_TYPES), st.integers(1, 4)),
    st.builds(
        lambda kind, raw: base64.b64encode(f"{kind}:{raw}".encode()).decode(),
        st.sampled_from(NODE_TYPES),
        st.integers().map(str) | st.text(max_size=30),
    ),
    st.text(max_size=40),
)
schemathesis.graphql.scalar("ID", ID.map(nodes.String))
schemathesis.graphql.scalar("JSON", JSON)
schemathesis.graphql.scalar("DateTime", DATETIME.map(nodes.String))


def fuzz(url: str, tokens: dict[str, str]) -> tuple[int, int, list[str]]:
    """(operations, requests sent, failures) for up to EXAMPLES generated cases of every query and
    mutation, each sent with every token."""
    schema = schemathesis.graphql.from_path(SCHEMA)
    session = requests.Session()
    operations, sent, failures = 0, 0, []
    for result in schema.get_all_operations():
        operation = result.ok()

        # Generation only (a failure is recorded, not shrunk), and the same examples on every run.
        @settings(
            max_examples=EXAMPLES,
            phases=[Phase.generate],
            database=None,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def send(case) -> None:
            nonlocal sent
            for role, token in tokens.items():
                response = case.call(base_url=url, session=session, headers={"Authorization": f"Bearer {token}"})
                sent += 1
                if response.status_code >= 500 or "Unexpected error." in response.text:
                    failures.append(
                        f"{case.operation.label} as {role}: {case.body!r} -> {response.status_code} {response.text[:300]}"
                    )

        send()
        operations += 1
    return operations, sent, failures


async def test_no_generated_request_gets_a_server_error(runtime, second_api_process):
    customer = await make_customer(runtime, "Ada", emails=["ada@example.com"], phones=["+442079460000"])
    await make_contact(runtime, customer_id=customer, case_id=await make_case(runtime, [customer]))
    tokens = {role: await _token(runtime, f"fuzz-{role}", role) for role in ROLES}

    began = time.perf_counter()
    operations, sent, failures = await asyncio.to_thread(fuzz, f"http://{second_api_process}/graphql", tokens)
    elapsed = time.perf_counter() - began

    print(f"schemathesis: {operations} operations, {sent} requests in {elapsed:.1f} s")
    assert operations > 50 and sent > operations * len(ROLES) * EXAMPLES // 2
    assert failures == [], "\n".join(failures[:20])
