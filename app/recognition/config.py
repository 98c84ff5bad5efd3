"""Validation of rule configurations: each kind's settings, with defaults filled in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from app.errors import ErrorCode, UserError
from app.models import (
    CASE_RULE_KINDS,
    CHANNELS,
    CUSTOMER_RULE_KINDS,
    IDENTIFIER_KINDS,
    PROMOTION_POLICIES,
    RULE_KINDS,
    RULE_TARGETS,
)
from app.recognition.connector import SECRET_ENV_PREFIX, connectors
from app.recognition.defaults import CASE_REFERENCE_PATTERN
from app.recognition.patterns import check_pattern

TEXT_FIELDS = ("subject", "text")
# Where a rule may read a value: a contact attribute, or a dotted path into the payload / headers.
SOURCE_ROOTS = ("from", "to", "subject", "text", "payload", "headers")
# Promotion may also read what a LOOKUP connector answered.
PROMOTION_SOURCE_ROOTS = SOURCE_ROOTS + ("lookup",)


def target_of(kind: str) -> str:
    return "case" if kind in CASE_RULE_KINDS else "customer"


def check_source(source: object, field: str, roots: tuple[str, ...] = SOURCE_ROOTS) -> str:
    if not isinstance(source, str) or not source.strip():
        raise UserError(ErrorCode.INVALID, "a source path is required", field)
    source = source.strip()
    head, _, rest = source.partition(".")
    if head not in roots:
        raise UserError(ErrorCode.INVALID, f"a source starts with one of {', '.join(roots)}", field)
    if head in ("payload", "headers", "lookup") and not rest:
        raise UserError(ErrorCode.INVALID, f"'{head}' needs a path, e.g. {head}.name", field)
    if head not in ("payload", "headers", "lookup") and rest:
        raise UserError(ErrorCode.INVALID, f"'{head}' has no sub-fields", field)
    return source


def check_channels(channels: object, field: str = "channels") -> list[str]:
    if channels is None:
        return []
    if not isinstance(channels, list) or any(c not in CHANNELS for c in channels):
        raise UserError(ErrorCode.INVALID, f"channels must be a list of {', '.join(CHANNELS)}", field)
    return list(dict.fromkeys(channels))


def _bool(config: dict, key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise UserError(ErrorCode.INVALID, f"{key} must be true or false", f"config.{key}")
    return value


def _number(
    config: dict, key: str, default: float, *, minimum: float, maximum: float, integer: bool = False
) -> float | int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= maximum:
        raise UserError(ErrorCode.INVALID, f"{key} must be a number from {minimum} to {maximum}", f"config.{key}")
    if integer and int(value) != value:
        raise UserError(ErrorCode.INVALID, f"{key} must be a whole number", f"config.{key}")
    return int(value) if integer else float(value)


def _text(config: dict, key: str, *, required: bool = True) -> str | None:
    value = config.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UserError(ErrorCode.REQUIRED, f"{key} is required", f"config.{key}")
    return value.strip()


def _text_fields(config: dict) -> list[str]:
    fields = config.get("fields", list(TEXT_FIELDS))
    if not isinstance(fields, list) or not fields or any(f not in TEXT_FIELDS for f in fields):
        raise UserError(ErrorCode.INVALID, "fields must be a non-empty list of subject, text", "config.fields")
    return list(dict.fromkeys(fields))


def check_connector(config: dict, prefix: str = "config") -> dict[str, Any]:
    url = config.get("url")
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(ErrorCode.INVALID, "url must be an http(s) URL", f"{prefix}.url")
    if parsed.username or parsed.password:
        raise UserError(ErrorCode.INVALID, "url must not carry credentials", f"{prefix}.url")
    refusal = connectors.policy.host_refusal(parsed.hostname)
    if refusal:
        raise UserError(ErrorCode.CONNECTOR_HOST_REFUSED, refusal, f"{prefix}.url")
    # The signing secret stays in the environment: a rule names the variable, never the secret.
    if config.get("secret") is not None:
        raise UserError(
            ErrorCode.INVALID,
            f"a rule never holds a secret: put it in a {SECRET_ENV_PREFIX}* environment variable "
            "and name that variable in secret_env",
            f"{prefix}.secret",
        )
    secret_env = config.get("secret_env")
    if secret_env is not None and (
        not isinstance(secret_env, str)
        or not secret_env.strip().startswith(SECRET_ENV_PREFIX)
        or len(secret_env.strip()) == len(SECRET_ENV_PREFIX)
    ):
        raise UserError(
            ErrorCode.INVALID,
            f"secret_env must name an environment variable starting with {SECRET_ENV_PREFIX}",
            f"{prefix}.secret_env",
        )
    return {
        "url": url,
        "secret_env": secret_env.strip() if secret_env else None,
        "timeout_seconds": _number(config, "timeout_seconds", 2.0, minimum=0.05, maximum=30),
        "retries": _number(config, "retries", 1, minimum=0, maximum=5, integer=True),
        "cache_seconds": _number(config, "cache_seconds", 30, minimum=0, maximum=3600),
        "failure_threshold": _number(config, "failure_threshold", 3, minimum=1, maximum=100, integer=True),
        "reset_seconds": _number(config, "reset_seconds", 30, minimum=0.1, maximum=3600),
    }


def check_rule_config(kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The kind's configuration with defaults filled in; INVALID / INVALID_PATTERN on `config.<key>`."""
    if kind not in RULE_KINDS:
        raise UserError(ErrorCode.INVALID, f"kind must be one of {', '.join(RULE_KINDS)}", "kind")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise UserError(ErrorCode.INVALID, "config must be an object", "config")
    if kind == "reference_in_text":
        return {
            "pattern": check_pattern(config.get("pattern", CASE_REFERENCE_PATTERN), "config.pattern"),
            "fields": _text_fields(config),
            # Like THREAD: a stranger quoting a case's reference is not put on that case.
            "require_known_sender": _bool(config, "require_known_sender", True),
        }
    if kind == "thread":
        return {"require_known_sender": _bool(config, "require_known_sender", True)}
    if kind == "external_reference":
        result: dict[str, Any] = {"case_field": _text(config, "case_field")}
        if config.get("path") is not None:
            result["path"] = check_source(config["path"], "config.path")
        else:
            result["pattern"] = check_pattern(config.get("pattern"), "config.pattern")
            result["fields"] = _text_fields(config)
        if config.get("connector") is not None:
            if not isinstance(config["connector"], dict):
                raise UserError(ErrorCode.INVALID, "connector must be an object", "config.connector")
            result["connector"] = check_connector(config["connector"], "config.connector")
        return result
    if kind == "open_case_of_customer":
        return {
            "days": _number(config, "days", 7, minimum=1, maximum=365, integer=True),
            "same_channel": _bool(config, "same_channel", True),
        }
    if kind == "identifier":
        identifier_kind = config.get("kind")
        if identifier_kind not in IDENTIFIER_KINDS:
            raise UserError(ErrorCode.INVALID, f"kind must be one of {', '.join(IDENTIFIER_KINDS)}", "config.kind")
        region = _text(config, "region", required=False)
        result = {"kind": identifier_kind, "source": check_source(config.get("source", "from"), "config.source")}
        if region:
            result["region"] = region.upper()
        return result
    if kind == "field_match":
        return {"path": check_source(config.get("path"), "config.path"), "field": _text(config, "field")}
    assert kind in CUSTOMER_RULE_KINDS and kind == "lookup"
    return check_connector(config)


def check_promotion(source: object, target: object, field: object, policy: object) -> tuple[str, str, str, str]:
    if policy not in PROMOTION_POLICIES:
        raise UserError(ErrorCode.INVALID, f"policy must be one of {', '.join(PROMOTION_POLICIES)}", "policy")
    if target not in RULE_TARGETS:
        raise UserError(ErrorCode.INVALID, "target must be case or customer", "target")
    source = check_source(source, "source", PROMOTION_SOURCE_ROOTS)
    if not isinstance(field, str) or not field.strip():
        raise UserError(ErrorCode.REQUIRED, "field is required", "field")
    field = field.strip()
    if policy == "add_identifier":
        if target != "customer" or field not in IDENTIFIER_KINDS:
            raise UserError(
                ErrorCode.INVALID,
                f"ADD_IDENTIFIER targets the customer and names an identifier kind ({', '.join(IDENTIFIER_KINDS)})",
                "field",
            )
    elif not (
        field == ("name" if target == "customer" else "subject") or (field.startswith("fields.") and len(field) > 7)
    ):
        raise UserError(
            ErrorCode.INVALID,
            "field is 'fields.<key>' or the customer's 'name' / the case's 'subject'",
            "field",
        )
    return source, target, field, policy
