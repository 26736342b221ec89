"""Tamper, bypass and overload events → the utility's tamper work queue (TamperCase), and what staff
do with a case: take it, send an inspection, dismiss or resolve it, or, where the utility removes
meters on such grounds (Egypt's late path, billing.removals), record the case as the ground for
removing a postpaid meter with its events as the evidence.

A meter has at most one open case (the constraint one_open_tamper_case): its new events join it;
after the case is closed, the next event opens a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import RemovalOrder, TamperCase
from billing.relay import policy_for
from billing.removals import removal_record
from core.errors import Conflict, DomainError, NotFound
from core.timebuckets import moment_text
from meters.models import Meter, MeterEvent

logger = logging.getLogger(__name__)

CASE_KINDS = frozenset((*MeterEvent.TAMPER_KINDS, MeterEvent.Kind.OVERLOAD))
# The removal ground each kind of event is evidence of (RemovalOrder.Ground), the graver first:
# a case holding several kinds offers each of their grounds, the first chosen unless staff pick.
GROUNDS = {
    MeterEvent.Kind.BYPASS: RemovalOrder.Ground.BYPASS,
    MeterEvent.Kind.REVERSE_CURRENT: RemovalOrder.Ground.BYPASS,
    MeterEvent.Kind.COVER_OPEN: RemovalOrder.Ground.TAMPERING,
    MeterEvent.Kind.MAGNETIC_TAMPER: RemovalOrder.Ground.TAMPERING,
    MeterEvent.Kind.NEUTRAL_TAMPER: RemovalOrder.Ground.TAMPERING,
    MeterEvent.Kind.OVERLOAD: RemovalOrder.Ground.LOAD_OVER_CONTRACT,
}
GROUND_ORDER = [
    RemovalOrder.Ground.BYPASS,
    RemovalOrder.Ground.TAMPERING,
    RemovalOrder.Ground.LOAD_OVER_CONTRACT,
]
EVIDENCE_EVENTS = 500  # events listed in one removal's evidence (a storm is summarised)


@dataclass
class _Batch:
    """One meter's case events of one ingest batch."""

    kinds: set[str] = field(default_factory=set)
    count: int = 0
    first: MeterEvent | None = None
    last_at: datetime | None = None

    def add(self, event: MeterEvent) -> None:
        self.kinds.add(event.kind)
        self.count += 1
        if self.first is None or (event.occurred_at, event.pk) < (
            self.first.occurred_at,
            self.first.pk,
        ):
            self.first = event
        if self.last_at is None or event.occurred_at > self.last_at:
            self.last_at = event.occurred_at


def tamper_events_record(sender, *, utility, events: Iterable[MeterEvent], **kwargs) -> None:
    """meter_events_stored receiver, inside the ingest's transaction, with newly stored events only
    (a duplicate is never sent twice, so it is never counted twice).

    1. Keep the tamper, bypass and overload events; group them by meter.
    2. Read the meters' open cases in one query, locked: a concurrent batch of the same meter
       waits here rather than counting from a stale row.
    3. An open case takes the batch's kinds, count and latest time (and an earlier first event,
       when a late one arrives): written with one bulk update.
    4. The other meters get a new case each (their accounts read in one query), created in one
       statement; should a concurrent batch have opened one meanwhile (the constraint), each is
       retried alone and joins it.
    """
    by_meter: dict[int, _Batch] = {}
    for event in events:
        if event.kind in CASE_KINDS:
            by_meter.setdefault(event.meter_id, _Batch()).add(event)
    if not by_meter:
        return
    open_cases = {
        case.meter_id: case
        for case in TamperCase.objects.select_for_update().filter(
            meter_id__in=list(by_meter), status__in=TamperCase.OPEN_STATUSES
        )
    }
    if open_cases:
        for meter_id, case in open_cases.items():
            _join(case, by_meter[meter_id])
        TamperCase.objects.bulk_update(
            list(open_cases.values()),
            ["kinds", "events", "first_event", "first_event_at", "last_event_at"],
        )
    new = [meter_id for meter_id in by_meter if meter_id not in open_cases]
    if not new:
        return
    accounts = dict(Meter.objects.filter(pk__in=new).values_list("pk", "account_id"))
    cases = [
        _opened(utility.pk, meter_id, accounts.get(meter_id), by_meter[meter_id])
        for meter_id in new
    ]
    try:
        with transaction.atomic():
            TamperCase.objects.bulk_create(cases)
    except IntegrityError:
        for case in cases:
            case.pk = None
            _open_or_join(case, by_meter[case.meter_id])


def _join(case: TamperCase, batch: _Batch) -> None:
    case.kinds = sorted(set(case.kinds) | batch.kinds)
    case.events += batch.count
    case.last_event_at = max(case.last_event_at, batch.last_at)
    if batch.first.occurred_at < case.first_event_at:
        case.first_event, case.first_event_at = batch.first, batch.first.occurred_at


def _opened(utility_id: int, meter_id: int, account_id: int | None, batch: _Batch) -> TamperCase:
    return TamperCase(
        utility_id=utility_id,
        meter_id=meter_id,
        account_id=account_id,
        kinds=sorted(batch.kinds),
        events=batch.count,
        first_event=batch.first,
        first_event_at=batch.first.occurred_at,
        last_event_at=batch.last_at,
    )


def _open_or_join(case: TamperCase, batch: _Batch) -> None:
    try:
        with transaction.atomic():
            case.save(force_insert=True)
    except IntegrityError:  # a concurrent batch opened this meter's case first
        existing = (
            TamperCase.objects.select_for_update()
            .filter(meter_id=case.meter_id, status__in=TamperCase.OPEN_STATUSES)
            .get()
        )
        _join(existing, batch)
        existing.save(
            update_fields=["kinds", "events", "first_event", "first_event_at", "last_event_at"]
        )


# --- Staff working a case ------------------------------------------------------------------------


def _locked(case_id: object) -> TamperCase:
    # Two staff working one case: the second sees the first's change, not a stale row.
    case = (
        TamperCase.objects.select_for_update(of=("self",))
        .select_related("utility", "meter", "account")
        .filter(pk=case_id)
        .first()
    )
    if case is None:
        raise NotFound("No such tamper case.", code="tamper_case_not_found")
    return case


def _must_be_open(case: TamperCase) -> None:
    if case.status not in TamperCase.OPEN_STATUSES:
        raise Conflict(
            f"This case is closed ({case.get_status_display().lower()}).", code="case_closed"
        )


def tamper_case_assign(*, case_id: object, actor) -> TamperCase:
    """The staff member takes the case."""
    with transaction.atomic():
        case = _locked(case_id)
        _must_be_open(case)
        if case.assigned_to_id == actor.pk:
            raise Conflict("This case is already yours.", code="already_assigned")
        case.assigned_to = actor
        case.save(update_fields=["assigned_to"])
    return case


def tamper_case_inspect(*, case_id: object, actor) -> TamperCase:
    """An inspection is sent to the premises: the case waits for its finding."""
    with transaction.atomic():
        case = _locked(case_id)
        _must_be_open(case)
        if case.status == TamperCase.Status.INSPECTING:
            raise Conflict("An inspection is already sent.", code="already_inspecting")
        case.status = TamperCase.Status.INSPECTING
        if case.assigned_to_id is None:
            case.assigned_to = actor
        case.save(update_fields=["status", "assigned_to"])
    return case


def tamper_case_close(
    *, case_id: object, outcome: str, note: str, actor, now: datetime | None = None
) -> TamperCase:
    """Dismiss the case (nothing wrong found) or resolve it (put right), with a note saying why."""
    if outcome not in (TamperCase.Status.DISMISSED, TamperCase.Status.RESOLVED):
        raise DomainError.for_field("outcome", "Dismiss or resolve.", code="unknown_outcome")
    note = (note or "").strip()
    if len(note) < 5:
        raise DomainError.for_field(
            "note", "Say what was found (5 characters or more).", code="note_required"
        )
    with transaction.atomic():
        case = _locked(case_id)
        _must_be_open(case)
        case.status = outcome
        case.note = note
        case.closed_at, case.closed_by = now or timezone.now(), actor
        case.save(update_fields=["status", "note", "closed_at", "closed_by"])
    return case


def case_events(case: TamperCase, *, limit: int = EVIDENCE_EVENTS) -> list[MeterEvent]:
    """The meter's tamper, bypass and overload events from the case's first to its last."""
    return list(
        MeterEvent.objects.filter(
            meter_id=case.meter_id,
            kind__in=CASE_KINDS,
            occurred_at__gte=case.first_event_at,
            occurred_at__lte=case.last_event_at,
        ).order_by("occurred_at", "pk")[:limit]
    )


def case_grounds(case: TamperCase) -> list[str]:
    """The removal grounds the case's kinds are evidence of, the graver first."""
    grounds = {GROUNDS[kind] for kind in case.kinds if kind in GROUNDS}
    return [ground for ground in GROUND_ORDER if ground in grounds]


def removal_refusal(case: TamperCase) -> str | None:
    """Why the case cannot be recorded as grounds for removal, or None when it can."""
    if case.status not in TamperCase.OPEN_STATUSES:
        return f"This case is closed ({case.get_status_display().lower()})."
    if not policy_for(case.utility).removal_months_late:
        return f"{case.utility.name} does not remove meters on such grounds."
    if case.meter.payment_mode != Meter.PaymentMode.POSTPAID:
        return "Only a postpaid meter is removed on such grounds; this one is prepaid."
    if case.account_id is None:
        return "The meter has no consumer account."
    if not case_grounds(case):
        return "None of the case's events is a ground for removal."
    return None


def evidence_text(case: TamperCase, events: list[MeterEvent]) -> str:
    """Each event as a line an inspector or a court reads: kind, local time with its zone, the
    head-end's code and our id."""
    zone = case.utility.zone
    lines = [
        f"Tamper case {case.pk}, meter {case.meter.serial}: {case.events} events from "
        f"{moment_text(case.first_event_at, zone, seconds=True)} to "
        f"{moment_text(case.last_event_at, zone, seconds=True)}."
    ]
    for event in events:
        code = f", code {event.code}" if event.code else ""
        lines.append(
            f"- {event.get_kind_display()} at {moment_text(event.occurred_at, zone, seconds=True)}"
            f"{code} (event {event.pk})"
        )
    if case.events > len(events):
        lines.append(f"… and {case.events - len(events)} more in the case.")
    return "\n".join(lines)


def tamper_case_removal_record(
    *, case_id: object, actor, ground: str | None = None, note: str = ""
) -> TamperCase:
    """Record the case as the ground for removing the meter (billing.removals.removal_record).

    1. Lock the case; it is open, its utility removes meters on such grounds (its late path is
       on), the meter is postpaid with an account.
    2. The ground is mapped from the case's kinds (bypass and reverse current: bypass; cover,
       magnetic and neutral tamper: tampering; overload: load over contract); staff may pick
       another of the case's grounds.
    3. The evidence lists each event (kind, local time with the zone, code, id); the evidence
       data holds the case and the events. The removal is due at once; the case points at it.
    """
    with transaction.atomic():
        case = _locked(case_id)
        refusal = removal_refusal(case)
        if refusal:
            raise Conflict(refusal, code="removal_not_possible")
        grounds = case_grounds(case)
        ground = ground or grounds[0]
        if ground not in grounds:
            raise DomainError.for_field(
                "ground", "Choose a ground the case's events show.", code="ground_not_shown"
            )
        events = case_events(case)
        evidence = evidence_text(case, events)
        if note.strip():
            evidence = f"{evidence}\n\nStaff note: {note.strip()}"
        order = removal_record(
            account=case.account,
            ground=ground,
            evidence=evidence,
            staff=actor,
            evidence_data={
                "tamper_case": case.pk,
                "events": [
                    {
                        "id": event.pk,
                        "kind": event.kind,
                        "occurred_at": event.occurred_at.isoformat(),
                        "code": event.code,
                    }
                    for event in events
                ],
            },
        )
        case.removal_order = order
        case.status = TamperCase.Status.REMOVAL
        case.closed_at, case.closed_by = timezone.now(), actor
        if case.assigned_to_id is None:
            case.assigned_to = actor
        case.save(
            update_fields=["removal_order", "status", "closed_at", "closed_by", "assigned_to"]
        )
    logger.info("Tamper case %s recorded as removal order %s", case.pk, order.pk)
    return case
