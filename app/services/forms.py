"""Forms: dictionaries (named value lists), the field definitions of the customer profile and of
each case template, and the validation of the custom fields a record is written with.

Validation applies to the fields being written: a definition that changes later never makes a
stored record invalid, and keys no definition knows are kept as given (integrations store their
references there).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import email_validator
from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import limits
from app.auth import Actor
from app.errors import ErrorCode, UserError, UserErrors, errors_at, not_found
from app.identifiers import normalize_phone
from app.limits import check_text
from app.models import FIELD_TYPES, CaseTemplate, Dictionary, DictionaryEntry, FormField, Pool
from app.recognition.patterns import MATCH_TIMEOUT_SECONDS, check_pattern, compile_pattern
from app.services import audit
from app.settings import get_settings

_UNSET: Any = object()


class _NotOffered(ValueError):
    """A dropdown value its dictionary does not offer."""


KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


# ---- dictionaries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryInput:
    value: str
    label: str | None = None
    active: bool = True


def _dictionary_snapshot(dictionary: Dictionary, entries: list[DictionaryEntry]) -> dict[str, Any]:
    return {
        "name": dictionary.name,
        "description": dictionary.description,
        "poolId": dictionary.pool_id,
        "entries": [{"value": e.value, "label": e.label, "active": e.active} for e in entries],
    }


async def _checked_dictionary_name(session: AsyncSession, name: object, exclude_id: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise UserError(ErrorCode.REQUIRED, "a dictionary needs a name", "name")
    check_text(name, "name", limits.NAME)
    query = select(Dictionary.id).where(Dictionary.name == name.strip())
    if exclude_id is not None:
        query = query.where(Dictionary.id != exclude_id)
    if await session.scalar(query) is not None:
        raise UserError(ErrorCode.DUPLICATE, f"a dictionary named {name.strip()!r} exists", "name")
    return name.strip()


async def _check_pool(session: AsyncSession, pool_id: int | None, field: str = "poolId") -> None:
    if pool_id is not None and await session.get(Pool, pool_id) is None:
        raise not_found("pool", field)


def _checked_entries(entries: list[EntryInput]) -> list[EntryInput]:
    limits.check_count(entries, "entries", limits.DICTIONARY_ENTRIES)
    seen: set[str] = set()
    checked = []
    for index, entry in enumerate(entries):
        field = f"entries.{index}"
        if not isinstance(entry.value, str) or not entry.value.strip():
            raise UserError(ErrorCode.REQUIRED, "a dictionary entry needs a value", f"{field}.value")
        value = entry.value.strip()
        check_text(value, f"{field}.value", limits.NAME)
        check_text(entry.label, f"{field}.label", limits.NAME)
        if value in seen:
            raise UserError(ErrorCode.DUPLICATE, f"the value {value!r} appears twice", f"{field}.value")
        seen.add(value)
        label = entry.label.strip() if isinstance(entry.label, str) and entry.label.strip() else value
        checked.append(EntryInput(value=value, label=label, active=bool(entry.active)))
    return checked


async def dictionary_entries(session: AsyncSession, dictionary_id: int) -> list[DictionaryEntry]:
    return list(
        await session.scalars(
            select(DictionaryEntry)
            .where(DictionaryEntry.dictionary_id == dictionary_id)
            .order_by(DictionaryEntry.position, DictionaryEntry.id)
        )
    )


async def _write_entries(session: AsyncSession, dictionary_id: int, entries: list[EntryInput]) -> None:
    """Make the dictionary's entries these, in this order (a value that stays keeps its row)."""
    existing = {e.value: e for e in await dictionary_entries(session, dictionary_id)}
    for position, entry in enumerate(entries):
        row = existing.pop(entry.value, None)
        if row is None:
            session.add(
                DictionaryEntry(
                    dictionary_id=dictionary_id,
                    value=entry.value,
                    label=entry.label,
                    active=entry.active,
                    position=position,
                )
            )
        else:
            row.label, row.active, row.position = entry.label, entry.active, position
    if existing:
        await session.execute(delete(DictionaryEntry).where(DictionaryEntry.id.in_([e.id for e in existing.values()])))
    await session.flush()


async def create_dictionary(
    session: AsyncSession,
    *,
    actor: Actor,
    name: str,
    description: str | None = None,
    pool_id: int | None = None,
    entries: list[EntryInput] | None = None,
) -> Dictionary:
    """Add a dictionary, global or kept by a pool, with its entries in order."""
    checked = _checked_entries(entries or [])
    check_text(description, "description", limits.DESCRIPTION)
    await _check_pool(session, pool_id)
    dictionary = Dictionary(
        name=await _checked_dictionary_name(session, name), description=description, pool_id=pool_id
    )
    session.add(dictionary)
    await session.flush()
    await _write_entries(session, dictionary.id, checked)
    await session.refresh(dictionary)
    audit.record(
        session,
        actor=actor,
        action="dictionary.create",
        entity_type="dictionary",
        entity_id=dictionary.id,
        after=_dictionary_snapshot(dictionary, await dictionary_entries(session, dictionary.id)),
    )
    return dictionary


async def update_dictionary(
    session: AsyncSession,
    *,
    actor: Actor,
    dictionary_id: int,
    name: str | None = None,
    description: str | None = _UNSET,
    pool_id: int | None = _UNSET,
    entries: list[EntryInput] | None = None,
) -> Dictionary:
    """Rename a dictionary, change its pool, or make its entries the ones given (what is not given stays).
    Records keep values that leave the list; new writes must use a value it offers."""
    dictionary = await session.get(Dictionary, dictionary_id, with_for_update=True)
    if dictionary is None:
        raise not_found("dictionary", "id")
    before = _dictionary_snapshot(dictionary, await dictionary_entries(session, dictionary_id))
    if name is not None:
        dictionary.name = await _checked_dictionary_name(session, name, exclude_id=dictionary_id)
    if description is not _UNSET:
        check_text(description, "description", limits.DESCRIPTION)
        dictionary.description = description
    if pool_id is not _UNSET:
        await _check_pool(session, pool_id)
        dictionary.pool_id = pool_id
    if entries is not None:
        await _write_entries(session, dictionary_id, _checked_entries(entries))
    await session.flush()
    await session.refresh(dictionary)
    audit.record(
        session,
        actor=actor,
        action="dictionary.update",
        entity_type="dictionary",
        entity_id=dictionary_id,
        before=before,
        after=_dictionary_snapshot(dictionary, await dictionary_entries(session, dictionary_id)),
    )
    return dictionary


async def delete_dictionary(session: AsyncSession, *, actor: Actor, dictionary_id: int) -> None:
    """Remove a dictionary no dropdown field uses."""
    dictionary = await session.get(Dictionary, dictionary_id, with_for_update=True)
    if dictionary is None:
        raise not_found("dictionary", "id")
    await _refuse_if_used(session, [dictionary_id], "id")
    before = _dictionary_snapshot(dictionary, await dictionary_entries(session, dictionary_id))
    await session.execute(delete(Dictionary).where(Dictionary.id == dictionary_id))
    audit.record(
        session,
        actor=actor,
        action="dictionary.delete",
        entity_type="dictionary",
        entity_id=dictionary_id,
        before=before,
    )


async def _refuse_if_used(session: AsyncSession, dictionary_ids: list[int], field: str) -> None:
    used = (
        await session.execute(
            select(Dictionary.name, FormField.key)
            .join(FormField, FormField.dictionary_id == Dictionary.id)
            .where(Dictionary.id.in_(dictionary_ids))
            .limit(1)
        )
    ).first()
    if used is not None:
        raise UserError(
            ErrorCode.IN_USE,
            f"dictionary {used.name!r} is used by the field {used.key!r}; change that field first",
            field,
        )


async def check_pool_dictionaries_unused(session: AsyncSession, *, pool_id: int) -> None:
    """A pool's dictionaries go with it: refused while a field uses one of them."""
    ids = list(await session.scalars(select(Dictionary.id).where(Dictionary.pool_id == pool_id)))
    if ids:
        await _refuse_if_used(session, ids, "id")


async def list_dictionaries(session: AsyncSession, *, pool_id: int | None = _UNSET) -> list[Dictionary]:
    """Every dictionary by name, or the global ones (pool_id=None), or those of one pool."""
    query = select(Dictionary)
    if pool_id is None:
        query = query.where(Dictionary.pool_id.is_(None))
    elif pool_id is not _UNSET:
        query = query.where(Dictionary.pool_id == pool_id)
    return list(await session.scalars(query.order_by(Dictionary.name)))


async def dictionary_by_name(session: AsyncSession, name: str) -> Dictionary | None:
    return await session.scalar(select(Dictionary).where(Dictionary.name == name))


# ---- field definitions ---------------------------------------------------------------------------


def _field_snapshot(field: FormField) -> dict[str, Any]:
    return {
        "templateId": field.template_id,
        "key": field.key,
        "label": field.label,
        "type": field.type,
        "mandatory": field.mandatory,
        "helpText": field.help_text,
        "position": field.position,
        "dictionaryId": field.dictionary_id,
        "pattern": field.pattern,
        "patternMessage": field.pattern_message,
        "searchable": field.searchable,
    }


def _form_of(template_id: int | None) -> Any:
    return FormField.template_id.is_(None) if template_id is None else FormField.template_id == template_id


async def form_fields(session: AsyncSession, *, template_id: int | None) -> list[FormField]:
    """The fields of the customer form (no template) or of a case template's form, in order."""
    return list(
        await session.scalars(select(FormField).where(_form_of(template_id)).order_by(FormField.position, FormField.id))
    )


async def searchable_fields(session: AsyncSession, *, target: str) -> dict[str, list[FormField]]:
    """The searchable fields of the customer form (`target` "customer") or of every case template's
    form ("case"), by key: a key may be defined by several templates, each with its own type."""
    where = FormField.template_id.is_(None) if target == "customer" else FormField.template_id.is_not(None)
    found: dict[str, list[FormField]] = {}
    for field in await session.scalars(select(FormField).where(where, FormField.searchable).order_by(FormField.id)):
        found.setdefault(field.key, []).append(field)
    return found


def searchable_value(field: FormField, value: Any, *, region: str) -> Any:
    """`value` as a record stores it under this field (an email normalised, a phone in E.164, a
    number as a number), so that an equality on the stored JSON finds it; ValueError if it cannot be one."""
    try:
        return _checked_value(field, value, region=region, offered={value} if isinstance(value, str) else set())
    except UserError as error:  # a phone number
        raise ValueError(error.message) from None


async def _check_shape(session: AsyncSession, field: FormField) -> None:
    """A field's type and what it needs: a dropdown its dictionary, a fixed format its pattern.
    Checked before the changed field is flushed (a missing dictionary is NOT_FOUND, not a broken key)."""
    with session.no_autoflush:
        await _check_shape_unflushed(session, field)


async def _check_shape_unflushed(session: AsyncSession, field: FormField) -> None:
    if field.type not in FIELD_TYPES:
        raise UserError(ErrorCode.INVALID, f"type must be one of {', '.join(FIELD_TYPES)}", "type")
    if field.type == "dropdown":
        if field.dictionary_id is None:
            raise UserError(ErrorCode.REQUIRED, "a dropdown takes its values from a dictionary", "dictionaryId")
        # FOR KEY SHARE: a deletion waits for this transaction, then finds the dictionary in use.
        if (
            await session.get(Dictionary, field.dictionary_id, with_for_update={"read": True, "key_share": True})
            is None
        ):
            raise not_found("dictionary", "dictionaryId")
    else:
        field.dictionary_id = None
    if field.type == "fixed_format":
        if field.pattern is None:
            raise UserError(ErrorCode.REQUIRED, "a fixed-format field needs a pattern", "pattern")
        check_text(field.pattern, "pattern", limits.PATTERN)
        check_pattern(field.pattern, "pattern", groups=None)
        check_text(field.pattern_message, "patternMessage", limits.NAME)
    else:
        field.pattern = field.pattern_message = None


async def create_field(
    session: AsyncSession,
    *,
    actor: Actor,
    template_id: int | None,
    key: str,
    label: str,
    type: str,
    mandatory: bool = False,
    help_text: str | None = None,
    position: int | None = None,
    dictionary_id: int | None = None,
    pattern: str | None = None,
    pattern_message: str | None = None,
    searchable: bool = False,
) -> FormField:
    """Add a field to the customer form (no template) or to a case template's form (at its end unless placed)."""
    if template_id is not None and await session.get(CaseTemplate, template_id, with_for_update=True) is None:
        raise not_found("case template", "templateId")
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise UserError(
            ErrorCode.INVALID, "a key is a letter then up to 63 letters, digits or underscores (accountType)", "key"
        )
    if await session.scalar(select(exists().where(_form_of(template_id), FormField.key == key))):
        raise UserError(ErrorCode.DUPLICATE, f"the form already has a field {key!r}", "key")
    if position is None:
        position = await session.scalar(
            select(func.coalesce(func.max(FormField.position) + 1, 0)).where(_form_of(template_id))
        )
    field = FormField(
        template_id=template_id,
        key=key,
        label=_checked_label(label),
        type=type,
        mandatory=mandatory,
        help_text=_checked_help(help_text),
        position=position,
        dictionary_id=dictionary_id,
        pattern=pattern,
        pattern_message=pattern_message,
        searchable=bool(searchable),
    )
    await _check_shape(session, field)
    session.add(field)
    await session.flush()
    await session.refresh(field)
    audit.record(
        session,
        actor=actor,
        action="form_field.create",
        entity_type="form_field",
        entity_id=field.id,
        after=_field_snapshot(field),
    )
    return field


def _checked_label(label: object) -> str:
    if not isinstance(label, str) or not label.strip():
        raise UserError(ErrorCode.REQUIRED, "a field needs a label", "label")
    check_text(label, "label", limits.NAME)
    return label.strip()


def _checked_help(help_text: str | None) -> str | None:
    check_text(help_text, "helpText", limits.HELP_TEXT)
    return help_text


async def update_field(
    session: AsyncSession,
    *,
    actor: Actor,
    field_id: int,
    label: str | None = None,
    type: str | None = None,
    mandatory: bool | None = None,
    help_text: str | None = _UNSET,
    position: int | None = None,
    dictionary_id: int | None = _UNSET,
    pattern: str | None = _UNSET,
    pattern_message: str | None = _UNSET,
    searchable: bool | None = None,
) -> FormField:
    """Change a field's definition (its key stays: records are keyed by it). Stored records stay as
    they are; the new definition applies to what is written from now on."""
    field = await session.get(FormField, field_id, with_for_update=True)
    if field is None:
        raise not_found("form field", "id")
    before = _field_snapshot(field)
    if label is not None:
        field.label = _checked_label(label)
    if type is not None:
        field.type = type
    if mandatory is not None:
        field.mandatory = mandatory
    if help_text is not _UNSET:
        field.help_text = _checked_help(help_text)
    if position is not None:
        field.position = position
    if dictionary_id is not _UNSET:
        field.dictionary_id = dictionary_id
    if pattern is not _UNSET:
        field.pattern = pattern
    if pattern_message is not _UNSET:
        field.pattern_message = pattern_message
    if searchable is not None:
        field.searchable = bool(searchable)
    await _check_shape(session, field)
    await session.flush()
    await session.refresh(field)
    audit.record(
        session,
        actor=actor,
        action="form_field.update",
        entity_type="form_field",
        entity_id=field_id,
        before=before,
        after=_field_snapshot(field),
    )
    return field


async def delete_field(session: AsyncSession, *, actor: Actor, field_id: int) -> None:
    """Remove a field from its form; records keep the values they hold under its key."""
    field = await session.get(FormField, field_id)
    if field is None:
        raise not_found("form field", "id")
    await session.execute(delete(FormField).where(FormField.id == field_id))
    audit.record(
        session,
        actor=actor,
        action="form_field.delete",
        entity_type="form_field",
        entity_id=field_id,
        before=_field_snapshot(field),
    )


# ---- validation of custom fields -----------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any) -> int | float:
    if isinstance(value, str):
        try:
            value = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a number")
    if isinstance(value, int) and not limits.is_int64(value):
        raise ValueError("is outside the 64-bit range")
    return value


def _date(value: Any) -> str:
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except (AttributeError, ValueError):
        raise ValueError("must be a date (YYYY-MM-DD)") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    if len(value) > limits.DESCRIPTION:
        raise ValueError(f"is longer than {limits.DESCRIPTION} characters")
    return value


def _fixed_format(field: FormField, value: Any) -> str:
    text = _text(value)
    try:
        matched = compile_pattern(field.pattern).fullmatch(text, timeout=MATCH_TIMEOUT_SECONDS)
    except TimeoutError:
        matched = None
    if matched is None:
        raise ValueError(field.pattern_message or f"does not have the expected format ({field.pattern})")
    return text


def _email(value: Any) -> str:
    try:
        return email_validator.validate_email(_text(value).strip(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError as error:
        raise ValueError(f"is not a valid email address ({error})") from None


def _checked_value(field: FormField, value: Any, *, region: str, offered: set[str]) -> Any:
    """The value as stored (numbers as numbers, dates ISO, emails and phones normalised); ValueError
    with the reason otherwise."""
    match field.type:
        case "text":
            return _text(value)
        case "number":
            return _number(value)
        case "date":
            return _date(value)
        case "boolean":
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        case "dropdown":
            if not isinstance(value, str) or value not in offered:
                raise _NotOffered(f"{value!r} is not a value of its list")
            return value
        case "fixed_format":
            return _fixed_format(field, value)
        case "email":
            return _email(value)
        case "phone":
            return normalize_phone(_text(value), region, f"fields.{field.key}")
    raise AssertionError(field.type)


async def _offered_values(session: AsyncSession, fields: list[FormField]) -> dict[int, set[str]]:
    """The active values of the dictionaries the dropdowns among `fields` use, by dictionary."""
    ids = {f.dictionary_id for f in fields if f.dictionary_id is not None}
    offered: dict[int, set[str]] = {i: set() for i in ids}
    if ids:
        rows = await session.execute(
            select(DictionaryEntry.dictionary_id, DictionaryEntry.value).where(
                DictionaryEntry.dictionary_id.in_(ids), DictionaryEntry.active
            )
        )
        for dictionary_id, value in rows:
            offered[dictionary_id].add(value)
    return offered


async def checked_fields(
    session: AsyncSession,
    *,
    template_id: int | None,
    values: dict[str, Any] | None,
    stored: dict[str, Any] | None,
    region: str | None = None,
) -> dict[str, Any]:
    """`values` checked against the form of the customer profile (no template) or of a case template,
    as they are to be stored; one UserError per bad field (`fields.<key>`), all at once.

    `stored` is None for a new record: then every mandatory field must be given. For an existing
    one only the fields written are checked, and a value equal to the stored one passes as it is
    (a form sent back whole must not fail on a value its definition no longer offers)."""
    values = limits.check_json_object(values, "fields") if values is not None else {}
    form = await form_fields(session, template_id=template_id)
    if not form:
        return values
    offered = await _offered_values(session, form)
    region = region or get_settings().default_phone_region
    checked = dict(values)
    errors: list[UserError] = []
    for field in form:
        where = f"fields.{field.key}"
        if field.key not in values:
            if stored is None and field.mandatory:
                errors.append(UserError(ErrorCode.REQUIRED, f"{field.label} is required", where))
            continue
        value = values[field.key]
        if stored is not None and stored.get(field.key) == value:
            continue
        if _is_empty(value):
            if field.mandatory:
                errors.append(UserError(ErrorCode.REQUIRED, f"{field.label} is required", where))
            else:
                checked[field.key] = None
            continue
        try:
            checked[field.key] = _checked_value(
                field, value, region=region, offered=offered.get(field.dictionary_id, set())
            )
        except _NotOffered as error:
            errors.append(UserError(ErrorCode.NOT_IN_DICTIONARY, f"{field.label}: {error}", where))
        except ValueError as error:
            errors.append(UserError(ErrorCode.INVALID, f"{field.label} {error}", where))
        except UserError as error:  # a phone number
            errors.append(UserError(error.code, f"{field.label}: {error.message}", where))
    if errors:
        raise UserErrors(errors)
    return checked


# ---- the dictionaries and customerFields sections of the configuration file -----------------------


def _field_document(field: FormField, dictionary_names: dict[int, str]) -> dict[str, Any]:
    document: dict[str, Any] = {"key": field.key, "label": field.label, "type": field.type}
    if field.mandatory:
        document["mandatory"] = True
    if field.help_text is not None:
        document["help_text"] = field.help_text
    if field.dictionary_id is not None:
        document["dictionary"] = dictionary_names[field.dictionary_id]
    if field.pattern is not None:
        document["pattern"] = field.pattern
        document["pattern_message"] = field.pattern_message
    if field.searchable:
        document["searchable"] = True
    return document


async def form_document(session: AsyncSession, *, template_id: int | None) -> list[dict[str, Any]]:
    names = dict((await session.execute(select(Dictionary.id, Dictionary.name))).all())
    return [_field_document(f, names) for f in await form_fields(session, template_id=template_id)]


async def import_form(session: AsyncSession, *, actor: Actor, template_id: int | None, items: Any) -> None:
    """Make a form's fields those of a file's list (matched by key), in the file's order."""
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UserError(ErrorCode.INVALID, "a form is a list of mappings", None)
    existing = {f.key: f for f in await form_fields(session, template_id=template_id)}
    kept: set[str] = set()
    for position, item in enumerate(items):
        with errors_at(str(position)):
            key = item.get("key")
            if key in kept:
                raise UserError(ErrorCode.DUPLICATE, f"the field {key!r} appears twice", "key")
            dictionary_id = None
            if item.get("dictionary") is not None:
                dictionary = await dictionary_by_name(session, str(item["dictionary"]))
                if dictionary is None:
                    raise UserError(ErrorCode.NOT_FOUND, f"no dictionary named {item['dictionary']!r}", "dictionary")
                dictionary_id = dictionary.id
            values = {
                "label": item.get("label"),
                "type": str(item.get("type", "")).lower(),
                "mandatory": bool(item.get("mandatory", False)),
                "help_text": item.get("help_text"),
                "position": position,
                "dictionary_id": dictionary_id,
                "pattern": item.get("pattern"),
                "pattern_message": item.get("pattern_message"),
                "searchable": bool(item.get("searchable", False)),
            }
            if key in existing:
                await update_field(session, actor=actor, field_id=existing.pop(key).id, **values)
            else:
                await create_field(session, actor=actor, template_id=template_id, key=key, **values)
            kept.add(key)
    for field in existing.values():
        await delete_field(session, actor=actor, field_id=field.id)


async def export_dictionaries(session: AsyncSession) -> list[dict[str, Any]]:
    pool_names = dict((await session.execute(select(Pool.id, Pool.name))).all())
    documents = []
    for dictionary in await list_dictionaries(session):
        document: dict[str, Any] = {"name": dictionary.name}
        if dictionary.description is not None:
            document["description"] = dictionary.description
        if dictionary.pool_id is not None:
            document["pool"] = pool_names[dictionary.pool_id]
        document["entries"] = [
            {"value": e.value, "label": e.label, **({} if e.active else {"active": False})}
            for e in await dictionary_entries(session, dictionary.id)
        ]
        documents.append(document)
    return documents


async def pool_id_by_name(session: AsyncSession, name: Any, field: str = "pool") -> int | None:
    """A configuration file names pools; NOT_FOUND when there is none of that name."""
    if name is None:
        return None
    pool_id = await session.scalar(select(Pool.id).where(Pool.name == str(name)))
    if pool_id is None:
        raise UserError(ErrorCode.NOT_FOUND, f"no pool named {name!r}", field)
    return pool_id


async def import_dictionaries(session: AsyncSession, *, actor: Actor, items: list[dict[str, Any]]) -> set[str]:
    """Create or update each dictionary of the file (matched by name); returns the names kept."""
    kept: set[str] = set()
    for index, item in enumerate(items):
        with errors_at(f"dictionaries.{index}"):
            name = str(item.get("name") or "").strip()
            if name in kept:
                raise UserError(ErrorCode.DUPLICATE, f"the dictionary {name!r} appears twice", "name")
            raw_entries = item.get("entries") or []
            if not isinstance(raw_entries, list) or not all(isinstance(e, dict) for e in raw_entries):
                raise UserError(ErrorCode.INVALID, "entries must be a list of mappings", "entries")
            values = {
                "description": item.get("description"),
                "pool_id": await pool_id_by_name(session, item.get("pool")),
                "entries": [
                    EntryInput(value=str(e.get("value", "")), label=e.get("label"), active=bool(e.get("active", True)))
                    for e in raw_entries
                ],
            }
            existing = await dictionary_by_name(session, name)
            if existing is None:
                await create_dictionary(session, actor=actor, name=name, **values)
            else:
                await update_dictionary(session, actor=actor, dictionary_id=existing.id, **values)
            kept.add(name)
    return kept


async def prune_dictionaries(session: AsyncSession, *, actor: Actor, kept: set[str]) -> int:
    removed = [d for d in await list_dictionaries(session) if d.name not in kept]
    for dictionary in removed:
        with errors_at(f"dictionaries[{dictionary.name}]"):
            await delete_dictionary(session, actor=actor, dictionary_id=dictionary.id)
    return len(removed)


async def export_customer_fields(session: AsyncSession) -> list[dict[str, Any]]:
    return await form_document(session, template_id=None)


async def import_customer_fields(session: AsyncSession, *, actor: Actor, items: list[dict[str, Any]]) -> set[str]:
    with errors_at("customerFields"):
        await import_form(session, actor=actor, template_id=None, items=items)
    return set()
