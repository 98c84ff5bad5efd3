"""Recognition for a batch of contacts: the lookups every contact of the batch will make, read
ahead in one query per kind (identifiers, references, threads, then the found cases' primary
customers and known senders), and answered from memory contact by contact.

The answers must be what each contact would get if the batch were ingested one by one, each in
its own transaction: so the batch's own effects are laid over what was read (a contact recorded
on a case is threaded like a stored one, a new case's reference is found), and anything the batch
changed in a way not laid over (identifiers added by promotion) is looked up live again, in the
batch's transaction, where the change is visible. Reads only: what the service holds back to
write together (the customers and cases it creates) it writes through `write_pending` before a
lookup reads the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import UserError
from app.recognition.engine import (
    MAX_CANDIDATES,
    Reads,
    RuleSet,
    _Context,
    identifier_values,
    message_id_forms,
    references_in,
    sender_pairs,
)
from app.recognition.patterns import PatternTimeout
from app.recognition.view import ContactView

Pair = tuple[str, str]


async def _nothing_pending() -> None:
    return None


_LOCK_IDENTIFIERS = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT unnest(:keys) AS k ORDER BY 1) keys"
).bindparams(bindparam("keys", type_=ARRAY(String)))

_LOCK_LIVE_CUSTOMERS = text(
    "SELECT id FROM customers WHERE id = ANY(:ids) AND status = 'active' ORDER BY id FOR KEY SHARE"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

# Active holders of each identifier, the first MAX_CANDIDATES + 1 by id (a contact's answer is the
# lowest ids over its identifiers, so these are enough).
_HOLDERS = text(
    """
    SELECT kind, value, customer_id FROM (
      SELECT i.kind, i.value, i.customer_id,
             row_number() OVER (PARTITION BY i.kind, i.value ORDER BY i.customer_id) AS n
      FROM customer_identifiers i JOIN customers c ON c.id = i.customer_id
      WHERE c.status = 'active' AND (i.kind, i.value) IN (SELECT * FROM unnest(:kinds, :values))
      GROUP BY i.kind, i.value, i.customer_id
    ) ranked WHERE n <= :limit
    """
).bindparams(
    bindparam("kinds", type_=ARRAY(String)),
    bindparam("values", type_=ARRAY(String)),
    bindparam("limit", MAX_CANDIDATES + 1),
)
# Referenced cases (not archived), each with where its tombstone leads.
_REFERENCES = text(
    """
    SELECT id, reference, merged_into_id,
           CASE WHEN merged_into_id IS NULL THEN id ELSE casegraph_live_case(id, false) END AS live_id
    FROM cases WHERE reference = ANY(:references) AND archived_at IS NULL
    """
).bindparams(bindparam("references", type_=ARRAY(String)))
# The latest stored message on a case not archived, per Message-ID.
_THREADS = text(
    """
    SELECT DISTINCT ON (c.message_id) c.message_id, c.occurred_at, c.id, c.case_id,
           casegraph_live_case(c.case_id, false) AS live_id
    FROM contacts c JOIN cases k ON k.id = c.case_id
    WHERE c.message_id = ANY(:forms) AND k.archived_at IS NULL
    ORDER BY c.message_id, c.occurred_at DESC, c.id DESC
    """
).bindparams(bindparam("forms", type_=ARRAY(String)))
_PRIMARIES = text(
    """
    SELECT cc.case_id, cc.customer_id FROM case_customers cc JOIN customers c ON c.id = cc.customer_id
    WHERE cc.case_id = ANY(:cases) AND cc.is_primary AND c.status = 'active'
    """
).bindparams(bindparam("cases", type_=ARRAY(BigInteger)))
# Which of the senders' identifiers a customer of each case holds, and which senders are agents.
_SENDERS = text(
    """
    SELECT DISTINCT cc.case_id, i.kind, i.value FROM case_customers cc
    JOIN customer_identifiers i ON i.customer_id = cc.customer_id
    WHERE cc.case_id = ANY(:cases) AND (i.kind, i.value) IN (SELECT * FROM unnest(:kinds, :values))
    UNION ALL
    SELECT NULL, 'agent', lower(u.email) FROM users u
    WHERE lower(u.email) = ANY(:emails) AND u.active AND u.role <> 'integrator'
    """
).bindparams(
    bindparam("cases", type_=ARRAY(BigInteger)),
    bindparam("kinds", type_=ARRAY(String)),
    bindparam("values", type_=ARRAY(String)),
    bindparam("emails", type_=ARRAY(String)),
)


@dataclass
class _Reference:
    id: int
    reference: str
    merged_into_id: int | None


@dataclass
class BatchReads:
    """What a batch's contacts will look up, read ahead, with the batch's own effects laid over it."""

    holders: dict[Pair, list[int]] = field(default_factory=dict)
    references: dict[str, _Reference] = field(default_factory=dict)
    references_read: set[str] = field(default_factory=set)
    threads: dict[str, tuple[datetime, int, int]] = field(default_factory=dict)  # form -> (at, contact id, case)
    live: dict[int, int] = field(default_factory=dict)  # case id -> where its tombstones lead
    primaries: dict[int, int | None] = field(default_factory=dict)
    held_by_case: set[tuple[int, str, str]] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    senders_read: tuple[set[int], set[Pair]] = field(default_factory=lambda: (set(), set()))
    senders_stale: bool = False
    # The active holders read, locked FOR KEY SHARE: live until the batch commits (a merge or an
    # erasure waits), so opening a case for one needs no check of its own.
    locked_customers: set[int] = field(default_factory=set)
    # Writes what the batch holds back (the customers and cases it created) before a lookup reads the database.
    write_pending: Callable[[], Awaitable[None]] = _nothing_pending

    @classmethod
    async def read_ahead(
        cls, conn: AsyncConnection, *, views: list[ContactView], rule_set: RuleSet, region: str
    ) -> BatchReads:
        reads = cls()
        pairs: dict[Pair, None] = {}
        references: dict[str, None] = {}
        forms: dict[str, None] = {}
        thread_rule = False
        for view in views:
            for rule in rule_set.for_channel(rule_set.rules, view.channel):
                config = rule_set.config_of(rule)
                if isinstance(config, UserError):
                    continue  # the rule reports it when it runs
                try:
                    if rule["kind"] == "identifier":
                        pairs.update(
                            dict.fromkeys((config["kind"], v) for v in identifier_values(view, config, region)[0])
                        )
                    elif rule["kind"] == "reference_in_text":
                        references.update(dict.fromkeys(references_in(view, config)))
                    elif rule["kind"] == "thread":
                        thread_rule = True
                        forms.update(dict.fromkeys(message_id_forms(view)[1]))
                except (UserError, PatternTimeout):
                    continue  # as above
        if pairs:
            await reads._read_holders(conn, list(pairs))
            # A new profile can only be made of identifiers nobody holds. Those are locked, in one
            # order for the whole batch (as each new profile locks its own, see
            # recognition.apply_outcome), and read again: a profile another transaction made with
            # one of them meanwhile is committed and seen now, or waits for this batch. Two
            # batches cannot deadlock on them, and identifiers held already are not locked, so
            # batches of known senders do not wait for each other.
            unheld = sorted(pair for pair, holders in reads.holders.items() if not holders)
            if unheld:
                await conn.execute(_LOCK_IDENTIFIERS, {"keys": [f"customer-identifier:{k}:{v}" for k, v in unheld]})
                await reads._read_holders(conn, unheld)
            held = sorted({customer_id for ids in reads.holders.values() for customer_id in ids})
            if held:
                reads.locked_customers = set(await conn.scalars(_LOCK_LIVE_CUSTOMERS, {"ids": held}))
        if references:
            reads.references_read = set(references)
            for row in await conn.execute(_REFERENCES, {"references": list(references)}):
                reads.references[row.reference] = _Reference(row.id, row.reference, row.merged_into_id)
                reads.live[row.id] = row.live_id
        if thread_rule and forms:
            for row in await conn.execute(_THREADS, {"forms": list(forms)}):
                reads.threads[row.message_id] = (row.occurred_at, row.id, row.case_id)
                reads.live[row.case_id] = row.live_id
        cases = sorted(set(reads.live.values()))
        if cases:
            reads.primaries = dict.fromkeys(cases)
            for row in await conn.execute(_PRIMARIES, {"cases": cases}):
                if reads.primaries[row.case_id] is None:
                    reads.primaries[row.case_id] = row.customer_id
            senders = {pair for view in views for pair in sender_pairs(view, region)}
            if senders:
                kinds, values = zip(*senders, strict=True)
                emails = [v for k, v in senders if k == "email"]
                for row in await conn.execute(
                    _SENDERS, {"cases": cases, "kinds": list(kinds), "values": list(values), "emails": emails}
                ):
                    if row.case_id is None:
                        reads.agents.add(row.value)
                    else:
                        reads.held_by_case.add((row.case_id, row.kind, row.value))
                reads.senders_read = (set(cases), senders)
        return reads

    async def _read_holders(self, conn: AsyncConnection, pairs: list[Pair]) -> None:
        kinds, values = zip(*pairs, strict=True)
        self.holders.update({pair: [] for pair in pairs})
        for row in await conn.execute(_HOLDERS, {"kinds": list(kinds), "values": list(values)}):
            self.holders[(row.kind, row.value)].append(row.customer_id)

    def reads_for(self, context: _Context) -> Reads:
        return _BatchContextReads(context, self)

    # ---- the batch's own effects, told by the service once a contact's outcome is carried out ----

    def identifiers_changed(self) -> None:
        """Existing customers hold identifiers they did not (by promotion): look them up live from now on."""
        self.holders.clear()
        self.senders_stale = True

    def customer_created(self, customer_id: int, pairs: list[Pair]) -> None:
        """A customer the batch created, holding these identifiers. It is live until the batch
        commits, and on no case read ahead (only on the one the batch opens for it), so it changes
        no known sender."""
        self.locked_customers.add(customer_id)
        for pair in pairs:
            if pair in self.holders:
                self.holders[pair] = sorted([*self.holders[pair], customer_id])[: MAX_CANDIDATES + 1]

    def case_created(self, case_id: int, reference: str | None, primary_customer_id: int | None) -> None:
        """A case the batch opened (its reference told now, or once it is written)."""
        if reference is not None:
            self.case_referenced(case_id, reference)
        self.live[case_id] = case_id
        self.primaries[case_id] = primary_customer_id

    def case_referenced(self, case_id: int, reference: str) -> None:
        if reference in self.references_read:
            self.references[reference] = _Reference(case_id, reference, None)

    def contact_recorded(
        self, message_id: str | None, occurred_at: datetime, contact_id: int, case_id: int | None
    ) -> None:
        """A contact of the batch now stands on its case: later replies to it thread there."""
        if message_id is None or case_id is None:
            return
        known = self.threads.get(message_id)
        if known is None or (occurred_at, contact_id) > known[:2]:
            self.threads[message_id] = (occurred_at, contact_id, case_id)
        self.live.setdefault(case_id, case_id)


class _BatchContextReads(Reads):
    """Answers from what the batch read ahead; anything else is read live, once what the batch
    holds back is written."""

    def __init__(self, context: _Context, batch: BatchReads) -> None:
        super().__init__(context)
        self.batch = batch

    async def holders(self, pairs: list[Pair]) -> list[int]:
        known = self.batch.holders
        if not all(pair in known for pair in pairs):
            await self.batch.write_pending()
            return await super().holders(pairs)
        return sorted({customer for pair in pairs for customer in known[pair]})[: MAX_CANDIDATES + 1]

    async def by_name(self, ids: list[int], name: str) -> list[int]:
        await self.batch.write_pending()  # one may be a customer the batch created
        return await super().by_name(ids, name)

    async def cases_by_reference(self, references: list[str]) -> list[Any]:
        if not all(r in self.batch.references for r in references):
            await self.batch.write_pending()  # one may be the reference a case of the batch gets
        if not set(references) <= self.batch.references_read:
            return await super().cases_by_reference(references)
        found = (self.batch.references.get(r) for r in sorted(references))
        return [row for row in found if row is not None]

    async def thread_case(self, forms: list[str], own_id: int) -> int | None:
        # Every form of every contact was read ahead; the batch's own contacts are laid over.
        found = [self.batch.threads[f] for f in forms if f in self.batch.threads]
        found = [entry for entry in found if entry[1] != own_id]
        return max(found)[2] if found else None

    async def live_case(self, case_id: int) -> int:
        live = self.batch.live.get(case_id)
        if live is not None:
            return live
        await self.batch.write_pending()
        return await super().live_case(case_id)

    async def primary_active_customer(self, case_id: int) -> int | None:
        if case_id not in self.batch.primaries:
            await self.batch.write_pending()
            return await super().primary_active_customer(case_id)
        return self.batch.primaries[case_id]

    async def sender_belongs_to_case(self, case_id: int, sender: list[Pair]) -> bool:
        cases, pairs = self.batch.senders_read
        if self.batch.senders_stale or case_id not in cases or not set(sender) <= pairs:
            await self.batch.write_pending()
            return await super().sender_belongs_to_case(case_id, sender)
        if any((case_id, kind, value) in self.batch.held_by_case for kind, value in sender):
            return True
        return any(kind == "email" and value in self.batch.agents for kind, value in sender)
