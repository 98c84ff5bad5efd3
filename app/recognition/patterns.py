"""User-supplied patterns: compiled with the `regex` module and always matched with a timeout,
so a pathological pattern cannot hang a worker."""

from __future__ import annotations

from functools import lru_cache

import regex

from app.errors import ErrorCode, UserError

MATCH_TIMEOUT_SECONDS = 0.05


class PatternTimeout(Exception):
    pass


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def check_pattern(pattern: object, field: str, *, groups: int | None = 1) -> str:
    """The pattern itself, or INVALID_PATTERN when it does not compile or has the wrong number of groups."""
    if not isinstance(pattern, str) or not pattern:
        raise UserError(ErrorCode.INVALID_PATTERN, "a pattern must be a non-empty string", field)
    try:
        compiled = compile_pattern(pattern)
    except (regex.error, OverflowError, ValueError) as error:
        raise UserError(ErrorCode.INVALID_PATTERN, f"invalid pattern: {error}", field) from None
    if groups is not None and compiled.groups != groups:
        raise UserError(
            ErrorCode.INVALID_PATTERN,
            f"the pattern must have exactly {groups} capture group(s), it has {compiled.groups}",
            field,
        )
    return pattern


def find_all(pattern: str, text: str) -> list[str]:
    """Every first-group capture of `pattern` in `text`; PatternTimeout when matching takes too long."""
    try:
        return [m.group(1) for m in compile_pattern(pattern).finditer(text, timeout=MATCH_TIMEOUT_SECONDS)]
    except TimeoutError:
        raise PatternTimeout(pattern) from None
