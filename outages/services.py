"""Writes for outages: publish, reschedule, cancel, start, restore, remind.

Every step locks the outage row (two staff pressing Publish at once must not send two notices),
checks the state it starts from, writes the history, and sends its notice through the fan-out with a
dedupe key that names the step and the schedule version, so a retried step sends nothing twice and a
reschedule sends again. A refused step changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Utility
from core.errors import Conflict, DomainError, NotFound
from core.phone import phone_mask
from notifications import categories as c
from notifications.messages import message_render
from notifications.models import Fanout, Notification
from notifications.services import fanout_finish, fanout_open, fanout_write
from notifications.sms import PermanentSmsError, TransientSmsError, sms_send
from outages import selectors
from outages.detection import outage_detected_notify
from outages.models import AffectedMeter, Outage, OutageEvent, OutageNotice
from outages.standards import late_notice_compensated, standards_evaluate_outage

logger = logging.getLogger(__name__)
# An unplanned outage is reported after it began; a clock a little ahead is tolerated.
CLOCK_SKEW = timedelta(minutes=5)
# Notices settled per statement (locks a chunk of rows at a time), and SMS per task.
NOTICE_CHUNK = 1000
NOTICE_SMS_BATCH = 100
# Affected meters whose people one chunk of a streamed notice tells: one INSERT of inbox rows,
# committed with its pushes queued, about a second of a worker's time at a city's scale.
NOTICE_STREAM_CHUNK = 5000
NOTICE_SMS_MAX_ATTEMPTS = 8


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


def _locked(outage_id: object) -> Outage:
    outage = (
        Outage.objects.select_for_update(of=("self",))
        .select_related("utility")
        .filter(pk=outage_id)
        .first()
    )
    if outage is None:
        raise NotFound("No such outage.", code="outage_not_found")
    return outage


def _event(outage: Outage, *, action: str, actor, changes: dict | None = None, note: str = ""):
    OutageEvent.objects.create(
        outage=outage, action=action, actor=actor, changes=changes or {}, note=note
    )


def _notice_context(outage: Outage) -> dict[str, Any]:
    return selectors.outage_notice_context(outage=outage)


def _fanout_key(outage: Outage, step: str) -> str:
    return f"outage:{outage.pk}:{step}"


def _notify(outage: Outage, *, category: str, step: str, extra: dict | None = None) -> None:
    """Tell everyone affected. The notice's fan-out is opened in the step's transaction and its
    first chunk written there (a feeder's outage is written whole); a city's rest is streamed
    after commit, a chunk a task (outage_notice_stream), so the step commits in seconds and the
    first pushes leave while the rest of the audience is being written."""
    fanout, created = fanout_open(
        category=category,
        dedupe_key=_fanout_key(outage, step),
        context={**_notice_context(outage), **(extra or {})},
        utility=outage.utility,
    )
    if created:
        _stream_chunk(outage, fanout)


def _stream_chunk(outage: Outage, fanout: Fanout) -> None:
    """Write the notice's next chunk: its people's inbox rows and, for a planned outage's
    notice of the schedule in force, its accounts' OutageNotice rows. After commit its pushes
    are queued, then the next chunk, or once all are written, the settling of the schedule's
    per-account notices (they read the pushes' outcome, so they wait for the last chunk)."""
    page = selectors.outage_audience_page(
        outage=outage, after=fanout.written_through, size=NOTICE_STREAM_CHUNK
    )
    if page.last is not None:
        fanout_write(fanout=fanout, user_ids=page.user_ids, through=page.last)
        if outage.kind == Outage.Kind.PLANNED and fanout.dedupe_key == _fanout_key(
            outage, _notice_step(outage)[1]
        ):
            _notices_open(outage, accounts=page.account_ids)
    if page.more:
        after = page.last
        transaction.on_commit(lambda: _stream_later(outage.pk, fanout.pk, after=after))
        return
    fanout_finish(fanout=fanout)
    if fanout.dedupe_key == _fanout_key(outage, _notice_step(outage)[1]):
        transaction.on_commit(lambda: _settle_later(outage.pk))


def _notice_holds(outage: Outage, fanout: Fanout) -> bool:
    """Whether what a streamed notice says still holds: a cancellation or a restoration always;
    a schedule's notice or reminder while its version is in force and the outage has not begun."""
    step = fanout.dedupe_key.removeprefix(_fanout_key(outage, ""))
    if step in ("cancelled", "restored"):
        return True
    return notice_live(outage) and step in (
        _notice_step(outage)[1],
        f"reminder:v{outage.version}",
    )


def outage_notice_stream(*, outage_id: int, fanout_id: int, after: int) -> int:
    """Write the next chunk of a streamed outage notice (each chunk's task). Returns the inbox
    rows written.

    1. Lock the outage row against the steps (FOR NO KEY UPDATE: a cancel waits for this chunk,
       and this chunk sees a cancel that committed before it).
    2. Claim the chunk with a conditional update of the fan-out at the cursor the task was given:
       a task delivered twice, or queued again by the sweeper while the first was only slow,
       claims nothing and writes nothing.
    3. A notice that no longer holds (cancelled, rescheduled, begun) is stopped: nobody more is
       told of it. Otherwise the next chunk (_stream_chunk), which queues the one after.
    """
    with transaction.atomic():
        outage = (
            Outage.objects.select_for_update(no_key=True, of=("self",))
            .select_related("utility")
            .filter(pk=outage_id)
            .first()
        )
        claimed = Fanout.objects.filter(
            pk=fanout_id, state=Fanout.State.WRITING, written_through=after
        ).update(progressed_at=timezone.now())
        if outage is None or claimed != 1:
            return 0
        fanout = Fanout.objects.get(pk=fanout_id)
        if not _notice_holds(outage, fanout):
            fanout_finish(fanout=fanout, state=Fanout.State.STOPPED)
            logger.info("Notice %s no longer holds: stopped", fanout.dedupe_key)
            # Its accounts' notices still waiting are dropped now, not at the next sweep.
            transaction.on_commit(lambda: _settle_later(outage.pk))
            return 0
        written = fanout.audience_size
        _stream_chunk(outage, fanout)
        return fanout.audience_size - written


def _stream_later(outage_id: int, fanout_id: int, *, after: int) -> None:
    from outages.tasks import stream_outage_notice

    try:
        stream_outage_notice.delay(outage_id, fanout_id, after)
    except (OperationalError, OSError) as exc:
        logger.warning(
            "Broker unavailable, notice %s of outage %s left for the sweeper: %s",
            fanout_id,
            outage_id,
            exc,
        )


def _notice_step(outage: Outage) -> tuple[str, str]:
    """The category and fan-out step of the notice of an outage's schedule in force: a planned
    outage's announcement, or an unplanned one's "power is off, expected back by"."""
    if outage.kind == Outage.Kind.UNPLANNED:
        return c.OUTAGE_UNPLANNED_ETA, f"unplanned:v{outage.version}"
    if outage.version <= 1:
        return c.OUTAGE_PLANNED, f"published:v{outage.version}"
    return c.OUTAGE_RESCHEDULED, f"rescheduled:v{outage.version}"


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


def _affected_snapshot(outage: Outage) -> int:
    """Resolve the scope into AffectedMeter (each meter with its account now) with one
    INSERT … SELECT in the publishing transaction: complete when it commits, as everything that
    reads it assumes. Returns how many meters."""
    select, params = (
        selectors.outage_scope_meters(outage=outage)
        .values("id", "account_id")
        .order_by()
        .query.sql_with_params()
    )
    table = connection.ops.quote_name(AffectedMeter._meta.db_table)
    # Only the model's table name and Django's own compiled SELECT are put in; values are params.
    sql = (
        f"INSERT INTO {table} (outage_id, meter_id, account_id) "  # noqa: S608
        f"SELECT %s, scope.id, scope.account_id FROM ({select}) scope"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [outage.pk, *params])
        return cursor.rowcount


def outage_publish(
    *, outage_id: object, actor=None, confirm_late: bool = False, now: datetime | None = None
) -> Outage:
    """Publish a draft.

    1. Lock the outage; only a draft may be published (a second press is refused, and its notice
       key would send nothing anyway).
    2. Check the schedule, then resolve the scope to meters and accounts (the snapshot every later
       step reads); a scope without meters is refused.
    3. Planned: later than the utility's notice period needs `confirm_late`, and is recorded.
       Unplanned: it is in progress from its start at once.
    4. Write the history and fan the notice out to every linked user of the affected accounts:
       the first chunk of them here, a city's rest streamed after commit (_notify).
    5. Planned: one OutageNotice per affected account, written with the fan-out's chunks and
       settled once the last is written and the pushes answered (push, else SMS to the
       registered mobile): the notice standard counts each account's notice from its delivery
       (outage_notices_settle). An account whose row a chunk has not written yet when the outage
       begins counts from the publication, as one that took its meter since does.
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
        meters = _affected_snapshot(outage)
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
            _notify(outage, category=c.OUTAGE_REMINDER, step=f"reminder:v{outage.version}")
            sent += 1
    return sent


# --- The notice to every affected account ----------------------------------------------------
# DOMAIN.md §3 (Saudi regulator): consumers are told of a planned outage at least
# Utility.outage_notice_hours (48) before it, or are owed StandardsPolicy.notice_amount (100 SAR).
# The notice counts for each account from when it reached that account: by the app (the first
# push a linked person's phone took), else by SMS to the account's registered mobile.


def _notices_open(outage: Outage, *, accounts: QuerySet) -> None:
    """One OutageNotice (waiting) per account of a chunk told of this schedule version, written
    by one INSERT … SELECT: a city's outage never passes through Python here. An account met in
    an earlier chunk keeps its row. created_at is when the notice was given."""
    accounts_sql, params = accounts.query.sql_with_params()
    created_at = connection.ops.adapt_datetimefield_value(outage.notice_given_at)
    table = connection.ops.quote_name(OutageNotice._meta.db_table)
    # Only the model's table name and Django's own compiled SELECT are put in; values are params.
    # "WHERE true" keeps SQLite from reading ON CONFLICT as a join's ON.
    sql = (
        f"INSERT INTO {table} (outage_id, version, account_id, status, channel, sms_to, "  # noqa: S608
        "sms_attempts, error, created_at) "
        f"SELECT %s, %s, affected.account_id, %s, '', '', 0, '', %s FROM ({accounts_sql}) affected "
        "WHERE true ON CONFLICT (outage_id, version, account_id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [outage.pk, outage.version, OutageNotice.Status.WAITING, created_at, *params]
        )


def notice_live(outage: Outage) -> bool:
    """Whether the outage's notices still hold: a planned outage's until it begins (or is
    cancelled), an unplanned one's while the supply is off."""
    if outage.kind == Outage.Kind.UNPLANNED:
        return outage.status == Outage.Status.IN_PROGRESS
    return outage.status == Outage.Status.PUBLISHED


def notices_sms_queue(*, outage: Outage, version: int) -> None:
    """Queue, after commit, the SMS of the outage's notices of `version` that are due to go."""
    ids = list(
        OutageNotice.objects.filter(outage=outage, version=version, status=OutageNotice.Status.SMS)
        .order_by("account__registered_mobile", "pk")
        .values_list("pk", flat=True)
    )
    if ids:
        transaction.on_commit(lambda: _sms_later(ids))


def _settle_later(outage_id: int) -> None:
    from outages.tasks import settle_outage_notices

    try:
        settle_outage_notices.delay(outage_id)
    except (OperationalError, OSError) as exc:
        logger.warning(
            "Broker unavailable, notices of outage %s left for the sweeper: %s", outage_id, exc
        )


def _sms_later(notice_ids: list[int], *, countdown: int | None = None) -> None:
    from outages.tasks import send_outage_notice_sms

    ids = iter(notice_ids)
    while batch := list(islice(ids, NOTICE_SMS_BATCH)):
        try:
            send_outage_notice_sms.apply_async(args=[batch], countdown=countdown)
        except (OperationalError, OSError) as exc:
            logger.warning(
                "Broker unavailable, %d notice SMS left for the sweeper: %s", len(batch), exc
            )
            return


def outage_notices_settle(*, outage_id: int, now: datetime | None = None) -> dict[str, int]:
    """Decide how the notice of the schedule in force reaches each affected account, once the
    pushes to the account's people are answered. Returns counts.

    1. An outage no longer published (cancelled, begun), or an older version: its notices still
       waiting are dropped; nobody is told of a schedule that no longer holds.
    2. In chunks of NOTICE_CHUNK rows, set-based: an account one of whose linked people's phones
       took the push is `sent` by push, at the first such push (Notification.pushed_at).
    3. An account whose people's pushes all ended without reaching a phone (no device, dead
       tokens, FCM failing to the last attempt, the category turned off), or that has nobody in
       the app, goes to `sms`; its SMS to the registered mobile is queued after commit.
    4. An account with a push still on its way (a retry, quiet hours) waits for the next run
       (the sweeper): the fallback is decided per account on the push's outcome. While the
       notice's fan-out is still being written, every account waits.
    """
    now = now or timezone.now()
    outage = Outage.objects.select_related("utility").filter(pk=outage_id).first()
    counts = {"push": 0, "sms": 0, "dropped": 0}
    if outage is None:
        return counts
    waiting = OutageNotice.objects.filter(outage=outage, status=OutageNotice.Status.WAITING)
    live = notice_live(outage)
    stale = waiting if not live else waiting.exclude(version=outage.version)
    counts["dropped"] = stale.update(status=OutageNotice.Status.DROPPED)
    if not live:
        OutageNotice.objects.filter(outage=outage, status=OutageNotice.Status.SMS).update(
            status=OutageNotice.Status.DROPPED
        )
        return counts

    _, step = _notice_step(outage)
    if Fanout.objects.filter(
        dedupe_key=_fanout_key(outage, step), state=Fanout.State.WRITING
    ).exists():
        # Its people are still being written: an account whose people have no row yet is not
        # an account nobody holds in the app. The stream's last chunk settles.
        return counts
    pushes = Notification.objects.filter(
        dedupe_key=_fanout_key(outage, step),
        user__account_links__account_id=OuterRef("account_id"),
        user__account_links__unlinked_at=None,
    )
    reached = pushes.filter(pushed_at__isnull=False)
    on_the_way = pushes.filter(
        pushed_at__isnull=True,
        push_status__in=[
            Notification.PushStatus.PENDING,
            Notification.PushStatus.SENDING,
            Notification.PushStatus.HELD,
        ],
    )
    last = 0
    while True:
        ids = list(
            waiting.filter(version=outage.version, pk__gt=last)
            .order_by("pk")
            .values_list("pk", flat=True)[:NOTICE_CHUNK]
        )
        if not ids:
            break
        last = ids[-1]
        chunk = OutageNotice.objects.filter(pk__in=ids, status=OutageNotice.Status.WAITING)
        counts["push"] += chunk.filter(Exists(reached)).update(
            status=OutageNotice.Status.SENT,
            channel=OutageNotice.Channel.PUSH,
            sent_at=Subquery(reached.order_by("pushed_at").values("pushed_at")[:1]),
        )
        if chunk.filter(~Exists(on_the_way)).update(
            status=OutageNotice.Status.SMS, next_attempt_at=now
        ):
            to_send = list(
                OutageNotice.objects.filter(pk__in=ids, status=OutageNotice.Status.SMS)
                # One SMS per mobile and outage in a batch: neighbours' ids sit together.
                .order_by("account__registered_mobile", "pk")
                .values_list("pk", flat=True)
            )
            counts["sms"] += len(to_send)
            transaction.on_commit(lambda batch=to_send: _sms_later(batch))
    return counts


def _notice_sms_text(outage: Outage) -> str:
    category, _ = _notice_step(outage)
    rendered = message_render(
        category=category,
        language=outage.utility.default_language,
        context=_notice_context(outage),
        utility=outage.utility,
    )
    return f"{rendered.title}: {rendered.body}"


def _notice_finish(row: OutageNotice, claim: uuid.UUID, **values) -> bool:
    values.setdefault("claim", None)
    return bool(
        OutageNotice.objects.filter(
            pk=row.pk, claim=claim, status=OutageNotice.Status.SENDING
        ).update(**values)
    )


def outage_notices_sms_send(*, notice_ids: list[int]) -> dict[str, int]:
    """Send the notices' SMS to the accounts' registered mobiles. Returns counts.

    1. Claim the rows still to send and due (`sms` → `sending`, stamped with a claim id): a task
       delivered twice, or the sweeper's copy, finds nothing left to claim.
    2. A notice whose schedule no longer holds (rescheduled, cancelled, begun) is dropped.
    3. The text is the notice's own, in the utility's default language; one SMS per mobile and
       outage (one person often holds several accounts).
    4. Taken by the gateway: `sent` at that moment, the time the notice standard counts from. A
       transient error: back to `sms` after a backoff, so a late SMS is a late notice; after
       NOTICE_SMS_MAX_ATTEMPTS, a refusal or no registered mobile: `failed` (not delivered).
    """
    claim = uuid.uuid4()
    now = timezone.now()
    OutageNotice.objects.filter(
        pk__in=notice_ids, status=OutageNotice.Status.SMS, next_attempt_at__lte=now
    ).update(
        status=OutageNotice.Status.SENDING,
        claim=claim,
        claimed_at=now,
        sms_attempts=F("sms_attempts") + 1,
    )
    rows = list(
        OutageNotice.objects.filter(claim=claim, status=OutageNotice.Status.SENDING)
        .select_related("outage__utility", "account")
        .order_by("account__registered_mobile", "pk")
    )
    counts = {"sent": 0, "retry": 0, "failed": 0, "dropped": 0}
    texts: dict[int, str] = {}
    sent: dict[tuple[int, str], datetime] = {}
    for row in rows:
        outage, mobile = row.outage, row.account.registered_mobile
        if not notice_live(outage) or row.version != outage.version:
            _notice_finish(row, claim, status=OutageNotice.Status.DROPPED)
            counts["dropped"] += 1
            continue
        if not mobile:
            _notice_finish(
                row, claim, status=OutageNotice.Status.FAILED, error="No registered mobile."
            )
            counts["failed"] += 1
            continue
        if (outage.pk, mobile) not in sent:
            if outage.pk not in texts:
                texts[outage.pk] = _notice_sms_text(outage)
            try:
                sms_send(to=mobile, body=texts[outage.pk])
            except TransientSmsError as exc:
                if row.sms_attempts >= NOTICE_SMS_MAX_ATTEMPTS:
                    _notice_finish(
                        row, claim, status=OutageNotice.Status.FAILED, error=str(exc)[:200]
                    )
                    counts["failed"] += 1
                    continue
                delay = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else min(5 * 2**row.sms_attempts, 600)
                )
                _notice_finish(
                    row,
                    claim,
                    status=OutageNotice.Status.SMS,
                    next_attempt_at=timezone.now() + timedelta(seconds=delay),
                    error=str(exc)[:200],
                )
                counts["retry"] += 1
                _sms_later([row.pk], countdown=delay)
                continue
            except PermanentSmsError as exc:
                logger.warning("Outage notice SMS to %s refused: %s", phone_mask(mobile), exc)
                _notice_finish(row, claim, status=OutageNotice.Status.FAILED, error=str(exc)[:200])
                counts["failed"] += 1
                continue
            sent[outage.pk, mobile] = timezone.now()
        _notice_finish(
            row,
            claim,
            status=OutageNotice.Status.SENT,
            channel=OutageNotice.Channel.SMS,
            sent_at=sent[outage.pk, mobile],
            sms_to=mobile,
            error="",
        )
        counts["sent"] += 1
    return counts


def outage_notices_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Finish what a lost task, a dead worker or a broker outage left of the notices; it reads
    only unfinished notices (a partial index). Beat runs it every minute.

    1. SMS claims older than NOTIFY_CLAIM_LEASE_SECONDS: their worker died; back to `sms` (that
       SMS may have gone; the lease bounds how often it can go twice).
    2. Outages with notices waiting for their pushes: settled again.
    3. SMS due and not taken for NOTIFY_SWEEP_GRACE_SECONDS: queued again.
    4. Streamed notices that have not moved for NOTIFY_SWEEP_GRACE_SECONDS (a lost chunk task, a
       worker dead mid-chunk, a broker down at commit): their next chunk queued again, at the
       cursor they stopped at (a first task only slow claims nothing then).
    """
    now = now or timezone.now()
    lease = timedelta(seconds=settings.NOTIFY_CLAIM_LEASE_SECONDS)
    grace = timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS)
    reclaimed = OutageNotice.objects.filter(
        status=OutageNotice.Status.SENDING, claimed_at__lt=now - lease
    ).update(status=OutageNotice.Status.SMS, claim=None, next_attempt_at=F("claimed_at"))
    outage_ids = list(
        OutageNotice.objects.filter(status=OutageNotice.Status.WAITING)
        .values_list("outage_id", flat=True)
        .order_by()
        .distinct()
    )
    for outage_id in outage_ids:
        outage_notices_settle(outage_id=outage_id, now=now)
    due = list(
        OutageNotice.objects.filter(
            status=OutageNotice.Status.SMS, next_attempt_at__lte=now - grace
        )
        .order_by("account__registered_mobile", "pk")
        .values_list("pk", flat=True)[: NOTICE_CHUNK * 10]
    )
    if due:
        transaction.on_commit(lambda: _sms_later(due))
    stalled = list(
        Fanout.objects.filter(
            state=Fanout.State.WRITING,
            progressed_at__lt=now - grace,
            dedupe_key__startswith="outage:",
        ).values_list("pk", "dedupe_key", "written_through")
    )
    for fanout_id, key, after in stalled:
        outage_id = int(key.split(":")[1])  # _fanout_key: "outage:<id>:<step>"
        transaction.on_commit(
            lambda o=outage_id, f=fanout_id, a=after: _stream_later(o, f, after=a)
        )
    return {
        "reclaimed": reclaimed,
        "outages": len(outage_ids),
        "queued": len(due),
        "streams": len(stalled),
    }
