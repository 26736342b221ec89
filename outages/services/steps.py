"""The outage steps: publish, reschedule, cancel, start, restore, and the evening-before
reminder; with the checks of a schedule and of the notice it gives."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Utility
from core.errors import Conflict, DomainError
from notifications import categories as c
from outages import selectors
from outages.detection import outage_detected_notify
from outages.models import Outage, OutageEvent
from outages.services import stream
from outages.services.common import _locked, _notice_step
from outages.services.stream import _notify, snapshot_complete, snapshot_fill
from outages.standards import late_notice_compensated, standards_evaluate_outage

# An unplanned outage is reported after it began; a clock a little ahead is tolerated.
CLOCK_SKEW = timedelta(minutes=5)


class LateNoticeUnconfirmed(DomainError):
    """Publishing now gives less notice than the utility promises: staff must confirm it."""

    code = "late_notice_unconfirmed"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def outage_schedule_check(
    *,
    kind: str,
    planned_start: datetime | None,
    planned_end: datetime | None,
    now: datetime | None = None,
    for_publish: bool = False,
) -> None:
    """The schedule makes sense: an end after the start; a planned outage still ahead when
    published; an unplanned one not in the future."""
    if planned_start is None or planned_end is None:
        raise DomainError("Give a start and an end.", code="schedule_required")
    if planned_end <= planned_start:
        raise DomainError.for_field(
            "planned_end", "The end must be after the start.", code="end_before_start"
        )
    if not for_publish:
        return
    now = now or timezone.now()
    if kind == Outage.Kind.PLANNED and planned_start <= now:
        raise DomainError.for_field(
            "planned_start",
            "A planned outage must start in the future; record one that already began as unplanned.",
            code="start_in_past",
        )
    if kind == Outage.Kind.UNPLANNED and planned_start > now + CLOCK_SKEW:
        raise DomainError.for_field(
            "planned_start",
            "An unplanned outage has already begun: its start cannot be in the future.",
            code="start_in_future",
        )


def notice_lead(*, outage: Outage, now: datetime) -> timedelta:
    return outage.planned_start - now


def notice_is_late(*, outage: Outage, now: datetime) -> bool:
    return outage.kind == Outage.Kind.PLANNED and notice_lead(outage=outage, now=now) < timedelta(
        hours=outage.utility.outage_notice_hours
    )


def _event(outage: Outage, *, action: str, actor, changes: dict | None = None, note: str = ""):
    OutageEvent.objects.create(
        outage=outage, action=action, actor=actor, changes=changes or {}, note=note
    )


def late_notice_consequence(*, utility: Utility) -> str:
    """What confirming a late notice commits the utility to, as staff are told: compensation only
    where its standards policy has the notice standard."""
    if late_notice_compensated(utility=utility):
        return "affected consumers will be compensated"
    return f"{utility.name} has no compensation standard, so no compensation is owed"


def _late_notice_check(outage: Outage, *, now: datetime, confirm_late: bool) -> bool:
    late = notice_is_late(outage=outage, now=now)
    if late and not confirm_late:
        lead = notice_lead(outage=outage, now=now)
        hours = max(0, int(lead.total_seconds() // 3600))
        raise LateNoticeUnconfirmed(
            f"Consumers would get about {hours} hours' notice, less than the "
            f"{outage.utility.outage_notice_hours} hours the utility promises. Confirm the late "
            f"notice to publish anyway; {late_notice_consequence(utility=outage.utility)}.",
            extra={"notice_hours": hours},
        )
    return late


def outage_publish(
    *, outage_id: object, actor=None, confirm_late: bool = False, now: datetime | None = None
) -> Outage:
    """Publish a draft.

    1. Lock the outage; only a draft may be published (a second press is refused, and its notice
       key would send nothing anyway).
    2. Check the schedule, then resolve the scope to meters and accounts (the snapshot every later
       step reads); a scope without meters is refused. A planned outage that begins an hour or
       more from now has its snapshot written here up to a chunk of meters and streamed with its
       notice (stream.snapshot_fill); any other's is written whole.
    3. Planned: later than the utility's notice period needs `confirm_late`, and is recorded.
       Unplanned: it is in progress from its start at once.
    4. Write the history and fan the notice out to every linked user of the affected accounts:
       the first chunk of them here, a city's rest streamed after commit (_notify).
    5. Planned: one OutageNotice per affected account, all written here, settled once the
       fan-out's last chunk is written and the pushes answered (push, else SMS to the registered
       mobile): the notice standard counts each account's notice from its delivery
       (outage_notices_settle), so an account a stalled stream never reached is one not told.
    Every write here is set-based (INSERT … SELECT): no Python object per meter, account or person.
    """
    now = now or timezone.now()
    with transaction.atomic():
        outage = _locked(outage_id)
        if outage.status != Outage.Status.DRAFT:
            raise Conflict(
                f"Only a draft can be published; this outage is {outage.get_status_display().lower()}.",
                code="not_a_draft",
            )
        outage_schedule_check(
            kind=outage.kind,
            planned_start=outage.planned_start,
            planned_end=outage.planned_end,
            now=now,
            for_publish=True,
        )
        late = _late_notice_check(outage, now=now, confirm_late=confirm_late)
        streamed = (
            outage.kind == Outage.Kind.PLANNED
            and outage.planned_start - now >= stream.SNAPSHOT_STREAM_LEAD
        )
        meters = snapshot_fill(outage, limit=stream.NOTICE_STREAM_CHUNK if streamed else None)
        if outage.snapshot_through is not None:  # streamed: the history counts the whole scope
            meters = selectors.outage_scope_meters(outage=outage).count()
        if not meters:
            raise DomainError(
                "The scope holds no meters: choose areas, feeders, transformers or meters with "
                "consumers on them.",
                code="empty_scope",
            )
        outage.version += 1
        outage.published_at = outage.notice_given_at = now
        outage.late_notice = late
        if outage.kind == Outage.Kind.UNPLANNED:
            outage.status = Outage.Status.IN_PROGRESS
            outage.actual_start = outage.planned_start
        else:
            outage.status = Outage.Status.PUBLISHED
        outage.save()
        _event(
            outage,
            action="published",
            actor=actor,
            changes={"meters": meters, "late_notice": late, "version": outage.version},
        )
        if late:
            _event(outage, action="late_notice_confirmed", actor=actor)
        if outage.kind == Outage.Kind.UNPLANNED:
            outage_detected_notify(outage=outage, now=now)
        else:
            category, step = _notice_step(outage)
            _notify(outage, category=category, step=step)
    return outage


def outage_reschedule(
    *,
    outage_id: object,
    planned_start: datetime,
    planned_end: datetime,
    actor=None,
    confirm_late: bool = False,
    now: datetime | None = None,
) -> Outage:
    """Move a published planned outage: a new version, notified again (late-notice rules as for
    publishing, measured to the new start)."""
    now = now or timezone.now()
    with transaction.atomic():
        outage = _locked(outage_id)
        if outage.status != Outage.Status.PUBLISHED or outage.kind != Outage.Kind.PLANNED:
            raise Conflict(
                "Only a published planned outage that has not started can be rescheduled.",
                code="not_reschedulable",
            )
        outage_schedule_check(
            kind=outage.kind,
            planned_start=planned_start,
            planned_end=planned_end,
            now=now,
            for_publish=True,
        )
        if (planned_start, planned_end) == (outage.planned_start, outage.planned_end):
            raise DomainError("That is the schedule already published.", code="schedule_unchanged")
        changes = {
            "planned_start": [_iso(outage.planned_start), _iso(planned_start)],
            "planned_end": [_iso(outage.planned_end), _iso(planned_end)],
        }
        outage.planned_start, outage.planned_end = planned_start, planned_end
        late = _late_notice_check(outage, now=now, confirm_late=confirm_late)
        snapshot_complete(outage)  # the new schedule is told to every meter's people
        outage.version += 1
        outage.notice_given_at = now
        outage.late_notice = late
        outage.save()
        _event(outage, action="rescheduled", actor=actor, changes={**changes, "late_notice": late})
        category, step = _notice_step(outage)
        _notify(outage, category=category, step=step)
    return outage


def outage_cancel(*, outage_id: object, actor=None, note: str = "") -> Outage:
    """Cancel a draft (nobody was told, nobody is) or a published outage (everyone told is told
    it is off)."""
    with transaction.atomic():
        outage = _locked(outage_id)
        if outage.status not in (Outage.Status.DRAFT, Outage.Status.PUBLISHED):
            raise Conflict(
                f"An outage that is {outage.get_status_display().lower()} cannot be cancelled.",
                code="not_cancellable",
            )
        was_published = outage.status == Outage.Status.PUBLISHED
        outage.status = Outage.Status.CANCELLED
        outage.save()
        _event(outage, action="cancelled", actor=actor, note=note)
        if was_published:
            _notify(outage, category=c.OUTAGE_CANCELLED, step="cancelled")
    return outage


def _moment(at: datetime | None, now: datetime, field: str) -> datetime:
    at = at or now
    if at > now + CLOCK_SKEW:
        raise DomainError.for_field(field, "This time is in the future.", code="time_in_future")
    return at


def outage_start(
    *, outage_id: object, actor=None, at: datetime | None = None, now: datetime | None = None
) -> Outage:
    """The supply went off: record when, and the late-notice compensation if notice was short."""
    now = now or timezone.now()
    with transaction.atomic():
        outage = _locked(outage_id)
        if outage.status != Outage.Status.PUBLISHED:
            raise Conflict(
                f"Only a published outage can start; this one is {outage.get_status_display().lower()}.",
                code="not_startable",
            )
        outage.actual_start = _moment(at, now, "actual_start")
        # Every meter for the standards; an account added here was never told: owed the notice.
        snapshot_complete(outage)
        outage.status = Outage.Status.IN_PROGRESS
        outage.save()
        _event(
            outage,
            action="started",
            actor=actor,
            changes={"actual_start": _iso(outage.actual_start)},
        )
        standards_evaluate_outage(outage=outage)
    return outage


def outage_restore(
    *,
    outage_id: object,
    actor=None,
    at: datetime | None = None,
    now: datetime | None = None,
    note: str = "",
) -> Outage:
    """The supply is back: record when, tell everyone affected, and record what the standards owe."""
    now = now or timezone.now()
    with transaction.atomic():
        outage = _locked(outage_id)
        if outage.status == Outage.Status.RESTORED:
            raise Conflict("This outage was already restored.", code="already_restored")
        if outage.status != Outage.Status.IN_PROGRESS:
            raise Conflict(
                f"Only an outage in progress can be restored; this one is {outage.get_status_display().lower()}.",
                code="not_restorable",
            )
        at = _moment(at, now, "actual_end")
        if at <= outage.actual_start:
            raise DomainError.for_field(
                "actual_end", "Restoration must come after the start.", code="end_before_start"
            )
        outage.actual_end = at
        outage.status = Outage.Status.RESTORED
        outage.save()
        _event(outage, action="restored", actor=actor, changes={"actual_end": _iso(at)}, note=note)
        _notify(outage, category=c.OUTAGE_RESTORED, step="restored", extra={"restored_at": at})
        standards_evaluate_outage(outage=outage)
    return outage


def outage_reminders_send(*, now: datetime | None = None) -> int:
    """Send each due evening-before reminder once per schedule version; returns how many went.
    The outage is claimed with a conditional update, so two beat runs never both send."""
    now = now or timezone.now()
    sent = 0
    for outage in selectors.outages_reminder_due(now=now):
        with transaction.atomic():
            claimed = (
                Outage.objects.filter(pk=outage.pk, version=outage.version, status=outage.status)
                .exclude(reminded_version=outage.version)
                .update(reminded_version=outage.version)
            )
            if claimed != 1:
                continue
            outage = _locked(outage.pk)
            snapshot_complete(outage)  # the reminder goes to every meter's people
            _notify(outage, category=c.OUTAGE_REMINDER, step=f"reminder:v{outage.version}")
            sent += 1
    return sent
