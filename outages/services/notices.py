"""The notice of a planned outage to every affected account: settled per account once the pushes
are answered, else an SMS to the registered mobile; and the sweeper of what a lost task leaves."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery
from django.utils import timezone
from kombu.exceptions import OperationalError

from core.errors import NotFound
from core.phone import phone_mask
from core.sql import insert_select
from notifications.messages import message_render
from notifications.models import Fanout, Notification
from notifications.sms import PermanentSmsError, TransientSmsError, sms_send
from outages.models import Outage, OutageNotice
from outages.services.common import (
    _fanout_key,
    _locked,
    _notice_context,
    _notice_step,
    _stream_later,
)

logger = logging.getLogger(__name__)
# Notices settled per statement (locks a chunk of rows at a time), and SMS per task.
NOTICE_CHUNK = 1000
NOTICE_SMS_BATCH = 100
NOTICE_SMS_MAX_ATTEMPTS = 8

# --- The notice to every affected account ----------------------------------------------------
# DOMAIN.md §3 (Saudi regulator): consumers are told of a planned outage at least
# Utility.outage_notice_hours (48) before it, or are owed StandardsPolicy.notice_amount (100 SAR).
# The notice counts for each account from when it reached that account: by the app (the first
# push a linked person's phone took), else by SMS to the account's registered mobile.


# The columns an OutageNotice is opened with, and its once-only key (per schedule version).
NOTICE_COLUMNS = (
    "outage_id", "version", "account_id", "status", "channel", "sms_to", "sms_attempts", "error",
    "created_at",
)  # fmt: skip
NOTICE_KEY = ("outage_id", "version", "account_id")


def _notices_open(outage: Outage, *, accounts: QuerySet, more: bool = False) -> None:
    """One OutageNotice (waiting) per account told of this schedule version, written by one
    INSERT … SELECT: a city's outage never passes through Python here. created_at is when the
    notice was given.

    The version's notice opens them once, under the outage's lock: no row of the version can be
    there yet, so a plain insert (not one that looks for a conflict first: 7.6 s to 5.4 s for a
    city of 1M accounts). `more`: a further chunk of a snapshot being streamed, whose accounts
    may hold a meter of an earlier chunk too; such an account keeps its row."""
    insert_select(
        OutageNotice,
        NOTICE_COLUMNS,
        "%s, %s, src.account_id, %s, '', '', 0, '', %s",
        accounts,
        [
            outage.pk,
            outage.version,
            OutageNotice.Status.WAITING,
            connection.ops.adapt_datetimefield_value(outage.notice_given_at),
        ],
        conflict=NOTICE_KEY if more else (),
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
                sms_send(to=mobile, body=texts[outage.pk], utility=outage.utility.code)
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
    5. A planned outage whose snapshot is still streaming SNAPSHOT_STREAM_LEAD before it begins
       (its stream stalled): the rest written now, each outage in its own transaction, so that
       the meters' failure reports and the consumers' fault reports find every meter in it.
    """
    from outages.services.stream import SNAPSHOT_STREAM_LEAD, snapshot_complete

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
    snapshots = 0
    for outage_id in Outage.objects.filter(
        status=Outage.Status.PUBLISHED,
        snapshot_through__isnull=False,
        planned_start__lte=now + SNAPSHOT_STREAM_LEAD,
    ).values_list("pk", flat=True):
        with transaction.atomic():
            try:
                outage = _locked(outage_id)
            except NotFound:  # deleted meanwhile: nothing to write
                continue
            if outage.status == Outage.Status.PUBLISHED and outage.snapshot_through is not None:
                snapshot_complete(outage)
                snapshots += 1
    return {
        "reclaimed": reclaimed,
        "outages": len(outage_ids),
        "queued": len(due),
        "streams": len(stalled),
        "snapshots": snapshots,
    }
