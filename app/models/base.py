from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, MetaData, Text, func
from sqlalchemy import text as sql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK condition: the column holds one of the values."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def json_object(column: str) -> str:
    """A CHECK condition: the JSONB column holds an object (every reader merges into it by key)."""
    return f"jsonb_typeof({column}) = 'object'"


def pk() -> Mapped[int]:
    return mapped_column(BigInteger, primary_key=True, autoincrement=True)


def created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def updated_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False)


def human_number(prefix: str, sequence: str) -> Mapped[str]:
    """A unique, human-readable key numbered by the database (C-000042, CASE-000123)."""
    return mapped_column(
        Text, nullable=False, unique=True, server_default=sql(f"human_number('{prefix}', nextval('{sequence}'))")
    )
