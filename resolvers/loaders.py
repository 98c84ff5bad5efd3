"""Per-request DataLoaders: every nested field loads through one of these, batched per tick.

Each batch runs on its own pooled connection, so concurrent loaders never share a session.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from strawberry.dataloader import DataLoader

from app import history
from app.models import (
    Attachment,
    Case,
    CaseCustomer,
    CaseTemplate,
    Contact,
    Customer,
    CustomerIdentifier,
    Dictionary,
    DictionaryEntry,
    FormField,
    OutboundMessage,
    Pool,
    ReasonCode,
    Task,
    User,
)
from app.pagination import Page, page_size
from app.runtime import Runtime
from app.services import mail as mail_service
from app.services import tasks as task_service
from schema.auth import User as UserType
from schema.cases import Case as CaseType
from schema.contacts import Attachment as AttachmentType
from schema.contacts import Contact as ContactType
from schema.customers import Customer as CustomerType
from schema.forms import CaseTemplate as CaseTemplateType
from schema.forms import Dictionary as DictionaryType
from schema.forms import DictionaryEntry as DictionaryEntryType
from schema.forms import FormField as FormFieldType
from schema.mail import Delivery as DeliveryType
from schema.queues import Pool as PoolType
from schema.reasons import ReasonCode as ReasonCodeType
from schema.tasks import Task as TaskType


@dataclass(frozen=True)
class PageKey:
    owner_id: int
    first: int
    after: str | None
    channel: str | None = None


@dataclass(frozen=True)
class TaskPageKey:
    owner: str  # "customer" or "case"
    owner_id: int
    first: int
    after: str | None
    status: str | None


class Loaders:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.customer = self._by_id(Customer, CustomerType.from_row)
        self.case = self._by_id(Case, CaseType.from_row)
        self.contact = self._by_id(Contact, ContactType.from_row)
        self.user = self._by_id(User, UserType.from_row)
        self.pool = self._by_id(Pool, PoolType.from_row)
        self.task = self._by_id(Task, TaskType.from_row)
        self.owner_tasks = DataLoader(self._task_pages)
        self.case_template = self._by_id(CaseTemplate, CaseTemplateType.from_row)
        self.dictionary = self._by_id(Dictionary, DictionaryType.from_row)
        self.dictionary_entries = DataLoader(self._dictionary_entries)
        self.template_form = DataLoader(self._template_forms)
        self.reason_code = DataLoader(self._reason_codes)
        self.attachments_by_contact = DataLoader(self._attachments)
        self.delivery_by_contact = DataLoader(self._deliveries)
        self.inbound_backlog = DataLoader(self._inbound_backlog)
        self.identifiers_by_customer = DataLoader(self._identifiers)
        self.case_links = DataLoader(self._case_links)
        self.customer_contacts = DataLoader(self._paged(self._customer_contacts))
        self.case_contacts = DataLoader(self._paged(self._case_contacts))
        self.customer_cases = DataLoader(self._paged(self._customer_cases))
        self.customer_open_cases = DataLoader(self._paged(self._customer_open_cases))
        self.customer_contact_count = DataLoader(self._customer_contact_counts)
        self.case_contact_count = DataLoader(self._case_contact_counts)

    async def _rows(self, statement, **params: Any) -> Sequence[Any]:
        async with self.runtime.engine.connect() as conn:
            return (await conn.execute(statement, params)).all()

    def _by_id(self, model, convert: Callable[[Any], Any]) -> DataLoader:
        """Objects of the graph by database id (None where missing)."""
        statement = _by_id_statement(model.__table__)

        async def load(ids: list[int]) -> list[Any]:
            found = {r.id: convert(r) for r in await self._rows(statement, ids=ids)}
            return [found.get(i) for i in ids]

        return DataLoader(load)

    async def _identifiers(self, customer_ids: list[int]) -> list[list[Any]]:
        table = CustomerIdentifier.__table__
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in await self._rows(
            select(table).where(table.c.customer_id.in_(customer_ids)).order_by(table.c.kind, table.c.id)
        ):
            grouped[row.customer_id].append(row)
        return [grouped[i] for i in customer_ids]

    async def _reason_codes(self, codes: list[str]) -> list[Any]:
        table = ReasonCode.__table__
        found = {
            r.code: ReasonCodeType.from_row(r) for r in await self._rows(select(table).where(table.c.code.in_(codes)))
        }
        return [found.get(c) for c in codes]

    async def _dictionary_entries(self, dictionary_ids: list[int]) -> list[list[Any]]:
        table = DictionaryEntry.__table__
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in await self._rows(
            select(table).where(table.c.dictionary_id.in_(dictionary_ids)).order_by(table.c.position, table.c.id)
        ):
            grouped[row.dictionary_id].append(DictionaryEntryType(value=row.value, label=row.label, active=row.active))
        return [grouped[i] for i in dictionary_ids]

    async def _template_forms(self, template_ids: list[int]) -> list[list[Any]]:
        table = FormField.__table__
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in await self._rows(
            select(table).where(table.c.template_id.in_(template_ids)).order_by(table.c.position, table.c.id)
        ):
            grouped[row.template_id].append(FormFieldType.from_row(row))
        return [grouped[i] for i in template_ids]

    async def _attachments(self, contact_ids: list[int]) -> list[list[Any]]:
        table = Attachment.__table__
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in await self._rows(
            select(table).where(table.c.contact_id.in_(contact_ids)).order_by(table.c.contact_id, table.c.id)
        ):
            grouped[row.contact_id].append(AttachmentType.from_row(row))
        return [grouped[i] for i in contact_ids]

    async def _deliveries(self, contact_ids: list[int]) -> list[Any]:
        table = OutboundMessage.__table__
        columns = [c for c in table.c if c.name != "raw"]  # the message itself is not read for a status
        found = {
            row.contact_id: DeliveryType.from_row(row)
            for row in await self._rows(select(*columns).where(table.c.contact_id.in_(contact_ids)))
        }
        return [found.get(i) for i in contact_ids]

    async def _inbound_backlog(self, mailbox_ids: list[int]) -> list[tuple[int, int]]:
        async with self.runtime.reading() as session:
            found = await mail_service.inbound_backlog(session, mailbox_ids)
        return [found.get(i, (0, 0)) for i in mailbox_ids]

    async def _case_links(self, case_ids: list[int]) -> list[list[Any]]:
        table = CaseCustomer.__table__
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in await self._rows(
            select(table)
            .where(table.c.case_id.in_(case_ids))
            .order_by(table.c.is_primary.desc(), table.c.created_at, table.c.customer_id)
        ):
            grouped[row.case_id].append(row)
        return [grouped[i] for i in case_ids]

    @staticmethod
    def _paged(load_group: Callable) -> Callable:
        """Group keys that share page arguments; each group is one statement over all its owners."""

        async def load(keys: list[PageKey]) -> list[Page]:
            groups: dict[tuple, list[int]] = defaultdict(list)
            for key in keys:
                groups[(key.first, key.after, key.channel)].append(key.owner_id)
            pages: dict[PageKey, Page] = {}
            for (first, after, channel), owner_ids in groups.items():
                for owner_id, page in (await load_group(owner_ids, first, after, channel)).items():
                    pages[PageKey(owner_id, first, after, channel)] = page
            return [pages[key] for key in keys]

        return load

    async def _customer_contacts(self, ids: list[int], first: int, after: str | None, channel: str | None):
        async with self.runtime.engine.connect() as conn:
            return await history.contact_pages(
                conn, owner="customer", owner_ids=ids, first=first, after=after, channel=channel
            )

    async def _case_contacts(self, ids: list[int], first: int, after: str | None, channel: str | None):
        async with self.runtime.engine.connect() as conn:
            return await history.contact_pages(conn, owner="case", owner_ids=ids, first=first, after=after)

    async def _customer_cases(self, ids: list[int], first: int, after: str | None, channel: str | None):
        async with self.runtime.engine.connect() as conn:
            return await history.customer_case_pages(conn, customer_ids=ids, first=first, after=after)

    async def _customer_open_cases(self, ids: list[int], first: int, after: str | None, channel: str | None):
        async with self.runtime.engine.connect() as conn:
            return await history.customer_case_pages(conn, customer_ids=ids, first=first, after=after, open_only=True)

    async def _customer_contact_counts(self, keys: list[tuple[int, str | None]]) -> list[int]:
        return await self._counts("customer", keys)

    async def _case_contact_counts(self, keys: list[tuple[int, str | None]]) -> list[int]:
        return await self._counts("case", keys)

    async def _counts(self, owner: str, keys: list[tuple[int, str | None]]) -> list[int]:
        by_channel: dict[str | None, list[int]] = defaultdict(list)
        for owner_id, channel in keys:
            by_channel[channel].append(owner_id)
        counts: dict[tuple[int, str | None], int] = {}
        async with self.runtime.engine.connect() as conn:
            for channel, ids in by_channel.items():
                for owner_id, n in (
                    await history.contact_counts(conn, owner=owner, owner_ids=ids, channel=channel)
                ).items():
                    counts[(owner_id, channel)] = n
        return [counts[k] for k in keys]

    async def _task_pages(self, keys: list[TaskPageKey]) -> list[Page]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for key in keys:
            groups[(key.owner, key.first, key.after, key.status)].append(key.owner_id)
        pages: dict[TaskPageKey, Page] = {}
        async with self.runtime.engine.connect() as conn:
            for (owner, first, after, status), owner_ids in groups.items():
                found = await task_service.owner_task_pages(
                    conn, owner=owner, owner_ids=owner_ids, first=first, after=after, status=status
                )
                for owner_id, page in found.items():
                    pages[TaskPageKey(owner, owner_id, first, after, status)] = page
        return [pages[key] for key in keys]

    # Page entry points used by the types: validate the arguments, load, attach a lazy count.

    async def customer_contacts_page(
        self, customer_id: int, first: int | None, after: str | None, channel: str | None
    ) -> Page:
        page = await self.customer_contacts.load(PageKey(customer_id, page_size(first), after, channel))
        return _with_count(page, lambda: self.customer_contact_count.load((customer_id, channel)))

    async def case_contacts_page(self, case_id: int, first: int | None, after: str | None) -> Page:
        page = await self.case_contacts.load(PageKey(case_id, page_size(first), after))
        return _with_count(page, lambda: self.case_contact_count.load((case_id, None)))

    async def customer_cases_page(
        self, customer_id: int, first: int | None, after: str | None, open_only: bool = False
    ) -> Page:
        loader = self.customer_open_cases if open_only else self.customer_cases
        return await loader.load(PageKey(customer_id, page_size(first), after))

    async def tasks_page(self, owner: str, owner_id: int, first: int | None, after: str | None, status: str | None):
        return await self.owner_tasks.load(TaskPageKey(owner, owner_id, page_size(first), after, status))

    async def latest_contact(self, customer_id: int) -> Any | None:
        page = await self.customer_contacts.load(PageKey(customer_id, 1, None, None))
        return page.rows[0] if page.rows else None


@cache
def _by_id_statement(table):
    return select(table).where(table.c.id.in_(bindparam("ids", expanding=True)))


def _with_count(page: Page, count: Callable) -> Page:
    return Page(rows=page.rows, cursors=page.cursors, has_next=page.has_next, count=count)
