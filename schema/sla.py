"""SLA: regions (time zone, business hours, holidays), TAT policies, a case's deadlines and SLA events."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry

from app.models import SLA_STAGES, TAT_TARGETS
from schema.enums import Priority, values_enum
from schema.errors import UserError
from schema.ids import to_global_id
from schema.node import Node

TatTargetKind = values_enum("TatTargetKind", TAT_TARGETS, "What a target times: the first response or the resolution.")
SlaStage = values_enum("SlaStage", SLA_STAGES, "A warning point (a target's minimum) or a deadline (its maximum).")


@strawberry.type(description="Business hours on one weekday, local time (a weekday may have several ranges).")
class BusinessHours:
    weekday: int = strawberry.field(description="0 is Monday, 6 is Sunday.")
    start: str = strawberry.field(description="HH:MM")
    end: str = strawberry.field(description="HH:MM; 24:00 ends the day.")


@strawberry.input
class BusinessHoursInput:
    weekday: int = strawberry.field(description="0 is Monday, 6 is Sunday.")
    start: str = strawberry.field(description="HH:MM")
    end: str = strawberry.field(description="HH:MM; 24:00 ends the day.")


@strawberry.type
class Holiday:
    date: date
    name: str


@strawberry.type(
    description="Where a group works: the time zone, business hours and holidays its case clocks count in."
)
class Region(Node):
    db_id: strawberry.Private[int]
    record: strawberry.Private[Any]
    name: str
    description: str | None
    time_zone: str = strawberry.field(description="An IANA time zone; daylight-saving changes follow it.")
    business_hours: list[BusinessHours]
    holiday_country: str | None = strawberry.field(description="ISO 3166 country of the public holidays.")
    holiday_subdivision: str | None = strawberry.field(description="State, province or nation within the country.")
    holiday_calendar: str | None = strawberry.field(description="An iCalendar document of further days off.")
    is_default: bool = strawberry.field(description="The region of cases whose workflow names none.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Region:
        return super().from_row(row, record=row, business_hours=[BusinessHours(**h) for h in row.business_hours])

    @strawberry.field(description="The days off between two dates (at most two years), with their names.")
    def holidays(self, start: date, end: date) -> list[Holiday]:
        from app.services.calendars import holidays_between

        if (end - start).days > 731:
            end = start.replace(year=start.year + 2)
        return [Holiday(date=day, name=name) for day, name in holidays_between(self.record, start, end)]


@strawberry.input
class RegionCreateInput:
    name: str
    time_zone: str
    business_hours: list[BusinessHoursInput] = strawberry.field(default_factory=list)
    description: str | None = None
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    holiday_calendar: str | None = None
    is_default: bool = False


@strawberry.input
class RegionUpdateInput:
    id: strawberry.ID
    name: str | None = None
    time_zone: str | None = None
    business_hours: list[BusinessHoursInput] | None = strawberry.field(
        default=None, description="Replaces all business hours."
    )
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    holiday_country: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    holiday_subdivision: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    holiday_calendar: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    is_default: bool | None = None


@strawberry.input(description="Which region, TAT policy, user group or workflow to remove.")
class SlaConfigDeleteInput:
    id: strawberry.ID


@strawberry.type
class RegionPayload:
    region: Region | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SlaConfigDeletePayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(
    description="For a priority, how long the first response or the resolution may take, in business minutes."
)
class TatTarget:
    priority: Priority
    target: TatTargetKind
    minimum_minutes: int | None = strawberry.field(description="The warning point (the earliest target).")
    maximum_minutes: int = strawberry.field(description="The deadline: the turnaround time itself.")


@strawberry.input
class TatTargetInput:
    priority: Priority
    target: TatTargetKind
    maximum_minutes: int
    minimum_minutes: int | None = None


@strawberry.type(
    description="A turnaround-time policy: targets per priority, and the waiting states that pause the clock."
)
class TatPolicy(Node):
    db_id: strawberry.Private[int]
    code: str
    description: str | None
    targets: list[TatTarget]
    pause_pending_customer: bool = strawberry.field(description="Waiting on the customer stops the clock.")
    pause_under_consultation: bool = strawberry.field(description="Waiting on a consultation stops the clock.")
    is_default: bool = strawberry.field(description="The policy of cases whose workflow names none.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any, targets: list[Any]) -> TatPolicy:
        return super().from_row(
            row,
            targets=[
                TatTarget(
                    priority=Priority(t.priority),
                    target=TatTargetKind(t.target),
                    minimum_minutes=t.minimum_minutes,
                    maximum_minutes=t.maximum_minutes,
                )
                for t in targets
            ],
        )


@strawberry.input
class TatPolicyCreateInput:
    code: str
    targets: list[TatTargetInput]
    description: str | None = None
    pause_pending_customer: bool = True
    pause_under_consultation: bool = False
    is_default: bool = False


@strawberry.input
class TatPolicyUpdateInput:
    id: strawberry.ID
    code: str | None = None
    targets: list[TatTargetInput] | None = strawberry.field(default=None, description="Replaces all targets.")
    description: str | None = strawberry.field(default=strawberry.UNSET, description="null clears it.")
    pause_pending_customer: bool | None = None
    pause_under_consultation: bool | None = None
    is_default: bool | None = None


@strawberry.type
class TatPolicyPayload:
    tat_policy: TatPolicy | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


def target_settings(targets: list[TatTargetInput]) -> list[dict[str, Any]]:
    return [
        {
            "priority": t.priority.value,
            "target": t.target.value,
            "minimum_minutes": t.minimum_minutes,
            "maximum_minutes": t.maximum_minutes,
        }
        for t in targets
    ]


def hours_settings(hours: list[BusinessHoursInput]) -> list[dict[str, Any]]:
    return [{"weekday": h.weekday, "start": h.start, "end": h.end} for h in hours]


@strawberry.type(description="A case's turnaround clock.")
class CaseSla:
    policy_id: strawberry.Private[int | None]
    response_warn_at: datetime | None
    response_due_at: datetime | None
    resolution_warn_at: datetime | None
    resolution_due_at: datetime | None
    first_responded_at: datetime | None = strawberry.field(
        description="The first outbound contact on the case by a person (automatic receipts do not count)."
    )
    paused: bool = strawberry.field(description="Waiting in a state the policy pauses in: the deadlines will move on.")
    breached: bool
    time_left: int | None = strawberry.field(
        description="Business seconds to the next open deadline; negative once it passed."
    )

    @classmethod
    def of(cls, state: Any) -> CaseSla:
        names = (
            "policy_id",
            "response_warn_at",
            "response_due_at",
            "resolution_warn_at",
            "resolution_due_at",
            "first_responded_at",
            "paused",
            "breached",
            "time_left",
        )
        return cls(**{name: getattr(state, name) for name in names})

    @strawberry.field(description="The id of the TAT policy the deadlines come from.")
    def tat_policy_id(self) -> strawberry.ID | None:
        return None if self.policy_id is None else to_global_id("TatPolicy", self.policy_id)


@strawberry.type(description="A warning point or deadline that passed.")
class SlaMark:
    stage: SlaStage
    target: TatTargetKind
    due_at: datetime | None = strawberry.field(description="The deadline of the target.")


@strawberry.type(description="The warning points and deadlines of a case that a sweep found passed.")
class SlaEvent:
    case_id: strawberry.ID
    reference: str
    marks: list[SlaMark]
    breached: bool
    escalated_group_id: strawberry.ID | None = strawberry.field(
        description="The group a breach was escalated to (its workflow's escalator group)."
    )

    @classmethod
    def of(cls, body: dict[str, Any]) -> SlaEvent:
        group = body.get("escalatedGroupId")
        marks = [
            SlaMark(
                stage=SlaStage(m["stage"]),
                target=TatTargetKind(m["target"]),
                due_at=datetime.fromisoformat(m["dueAt"]) if m.get("dueAt") else None,
            )
            for m in body["marks"]
        ]
        return cls(
            case_id=to_global_id("Case", body["caseId"]),
            reference=body["reference"],
            marks=marks,
            breached=any(m.stage.value == "breach" for m in marks),
            escalated_group_id=to_global_id("UserGroup", group) if group is not None else None,
        )
