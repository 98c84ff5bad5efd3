"""Message templates: the texts of the system's own mails, as an administrator edited them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, one_of, updated_at

# The system messages whose texts can be edited (the defaults are in app/mail/templates.py).
MESSAGE_KINDS = ("sla_warning", "sla_breach", "task_reminder")


class MessageTemplate(Base):
    """An edited system message; a kind without a row uses its default text."""

    __tablename__ = "message_templates"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (CheckConstraint(one_of("kind", MESSAGE_KINDS), name="kind"),)
