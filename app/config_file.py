"""The configuration as one YAML file (`casegraph config export|import FILE`), one section per
part of the configuration. A domain adds its section to SECTIONS; a section may name what an
earlier one holds (a dropdown its dictionary), never a later one.

Import is all or nothing: every section the file holds is written in one transaction, and the
first refusal (naming its place, `caseTemplates.2.form.0.pattern`) rolls all of it back. A section
the file leaves out stays as it is; a section it holds is made exactly the file's, so what the
file no longer lists is deleted (refused for what is in use: deactivate it in the file instead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ErrorCode, UserError
from app.services import forms, messages, reasons, replies, search, sla, templates

FORMAT_VERSION = 1


async def _nothing_to_prune(session: AsyncSession, *, actor: Actor, kept: set[str]) -> int:
    return 0


@dataclass(frozen=True)
class Section:
    name: str  # the file's key
    export: Callable[[AsyncSession], Awaitable[list[dict[str, Any]]]]
    # Creates or updates each item of the file; returns the keys of what it kept.
    load: Callable[..., Awaitable[set[str]]]
    # Deletes what the section held and the file no longer lists; returns how many. Run after every
    # load, last section first, so what a removed item used is no longer used when it goes.
    prune: Callable[..., Awaitable[int]] = _nothing_to_prune


@dataclass(frozen=True)
class Part:
    """Sections a domain exports and imports together with checks of its own across them (regions,
    TAT policies, groups and workflows name each other): each section given replaces its kind."""

    names: tuple[str, ...]
    export: Callable[[AsyncSession], Awaitable[dict[str, Any]]]
    load: Callable[[AsyncSession, dict[str, Any], Actor], Awaitable[dict[str, int]]]


SECTIONS: list[Section] = [
    Section("reasonCodes", reasons.export_section, reasons.import_section, reasons.prune_section),
    Section("dictionaries", forms.export_dictionaries, forms.import_dictionaries, forms.prune_dictionaries),
    Section("customerFields", forms.export_customer_fields, forms.import_customer_fields),
    Section("caseTemplates", templates.export_section, templates.import_section, templates.prune_section),
    Section("messageTemplates", messages.export_section, messages.import_section, messages.prune_section),
    Section("replyTemplates", replies.export_section, replies.import_section, replies.prune_section),
]
PARTS: list[Part] = [
    Part(sla.SECTIONS, sla.export_sla_config, sla.import_sla_config),
    # After the groups (sla) and the forms: screens name groups, pools, users and custom fields.
    Part((search.SCREEN_SECTION,), search.export_screens, search.import_screens),
]


async def export_config(session: AsyncSession) -> str:
    """Every section as one YAML document."""
    document: dict[str, Any] = {"version": FORMAT_VERSION}
    for section in SECTIONS:
        document[section.name] = await section.export(session)
    for part in PARTS:
        document.update(await part.export(session))
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _parsed(document: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The file's sections, each a list of mappings, and the whole file for the parts to check
    themselves; a refusal names what is wrong."""
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as error:
        raise UserError(ErrorCode.INVALID, f"not valid YAML: {error}", "file") from None
    if not isinstance(data, dict):
        raise UserError(ErrorCode.INVALID, "file must be a mapping", "file")
    if data.get("version") != FORMAT_VERSION:
        raise UserError(ErrorCode.INVALID, f"version must be {FORMAT_VERSION}", "version")
    known = {section.name for section in SECTIONS}
    unknown = sorted(set(data) - known - {name for part in PARTS for name in part.names} - {"version"})
    if unknown:
        raise UserError(ErrorCode.INVALID, f"unknown sections: {', '.join(map(str, unknown))}", unknown[0])
    sections = {}
    for name in known & set(data):
        items = data[name] or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise UserError(ErrorCode.INVALID, f"{name} must be a list of mappings", name)
        sections[name] = items
    return sections, data


async def import_config(session: AsyncSession, *, actor: Actor, document: str) -> dict[str, int]:
    """Make the configuration the file's, section by section, all or nothing; how many items each section holds."""
    sections, data = _parsed(document)
    present = [section for section in SECTIONS if section.name in sections]
    kept = {}
    for section in present:
        kept[section.name] = await section.load(session, actor=actor, items=sections[section.name])
    counts = {section.name: len(sections[section.name]) for section in present}
    for part in PARTS:
        given = {name: data[name] for name in part.names if name in data}
        if given:
            counts.update(await part.load(session, given, actor))
    for section in reversed(present):
        await section.prune(session, actor=actor, kept=kept[section.name])
    return counts
