"""Delivering alerts: push batches, quiet hours, SMS fallback, retries and the sweeper.

Every alert is an inbox row written before anything is sent. A push task takes row ids and claims
them with a conditional update (pending → sending, stamped with a claim id); a task delivered twice,
or two workers given the same ids, find nothing left to claim. Messages go in small chunks, each
written down as soon as it is answered while the next ones travel; the claim is renewed as the batch
goes. A claim older than NOTIFY_CLAIM_LEASE_SECONDS belongs to a dead worker: the sweeper puts it
back to pending and sends it again. Only the messages out without their results written when the
worker died (FCM_MAX_CONCURRENCY at most) may then reach FCM twice; they carry the alert's id as
collapse key and tag, so the phone shows one notification.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import AccountLink
from core import metrics
from notifications import categories as c
from notifications import selectors
from notifications.models import Device, Notification, NotificationPreference
from notifications.push import Outcome, PushMessage, PushSending, push_send_start

logger = logging.getLogger(__name__)

Status = Notification.PushStatus
SWEEP_LIMIT = 100_000
# Rows of a push batch claimed and read at a time: the first pushes leave while the rest wait. (A
# row claimed but not yet sent when its worker dies waits for the lease, then goes once: claims
# cost time after a crash, not duplicates.)
PAGE_ROWS = 100
# The FCM_MAX_CONCURRENCY messages a worker has out are split in this many chunks, each written down
# as soon as it is answered: a chunk's rows are recorded while the other chunks travel.
CHUNKS_OUT = 4


# --- Queueing -------------------------------------------------------------------------------


def push_dispatch(
    *, notification_ids: list[int], countdown: int | None = None, bulk: bool = True
) -> bool:
    """Queue one push task: a batch (bulk queue) or, with bulk=False, one user's alert (alerts
    queue, ahead of every fan-out). A broker outage is logged, not raised: the row is already
    written, and the sweeper queues it again once the broker is back."""
    from notifications.tasks import push_alert, push_batch

    task = push_batch if bulk else push_alert
    try:
        task.apply_async(args=[notification_ids], countdown=countdown)
    except (OperationalError, OSError) as exc:
        logger.warning(
            "Broker unavailable, %d alerts left for the sweeper: %s", len(notification_ids), exc
        )
        return False
    return True


def _dispatch_pending(queryset, *, limit: int) -> int:
    """Queue push tasks for pending rows in batches; stamp each batch once it is queued."""
    ids = queryset.order_by("id").values_list("id", flat=True)[:limit].iterator(chunk_size=5000)
    queued = 0
    while batch := list(islice(ids, settings.NOTIFY_BATCH_SIZE)):
        if not push_dispatch(notification_ids=batch):
            break
        Notification.objects.filter(pk__in=batch, push_status=Status.PENDING).update(
            dispatched_at=timezone.now()
        )
        queued += len(batch)
    return queued


def fanout_dispatch(*, fanout_id: int) -> int:
    """Split a fan-out's pending rows into push batches for the workers."""
    return _dispatch_pending(
        Notification.objects.filter(fanout_id=fanout_id, push_status=Status.PENDING),
        limit=SWEEP_LIMIT * 10,
    )


def fanout_rows_dispatch(*, notification_ids: list[int]) -> int:
    """Queue the push batches of a streamed fan-out's chunk just committed (its rows were stamped
    dispatched when written: a broker outage leaves them to the sweeper, after its grace)."""
    queued = 0
    size = settings.NOTIFY_BATCH_SIZE
    for start in range(0, len(notification_ids), size):
        batch = notification_ids[start : start + size]
        if not push_dispatch(notification_ids=batch):
            break
        queued += len(batch)
    return queued


def fanout_dispatch_safely(*, fanout_id: int) -> None:
    from notifications.tasks import fanout_dispatch as fanout_dispatch_task

    try:
        fanout_dispatch_task.delay(fanout_id)
    except (OperationalError, OSError) as exc:
        logger.warning("Broker unavailable, fan-out %s left for the sweeper: %s", fanout_id, exc)


def notifications_sweep() -> dict[str, int]:
    """Re-dispatch what a dead worker, a lost task or a broker outage left behind.

    1. Claims older than the lease: their worker died mid-batch; back to pending.
    2. Alerts held for quiet hours whose hours are over: back to pending.
    3. Pending alerts that are due and were queued more than the grace period ago (or never,
       because the broker was down at commit): queued again. A task that was only slow finds
       nothing to claim when it finally runs.
    """
    now = timezone.now()
    lease = timedelta(seconds=settings.NOTIFY_CLAIM_LEASE_SECONDS)
    grace = timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS)
    reclaimed = Notification.objects.filter(
        push_status=Status.SENDING, claimed_at__lt=now - lease
    ).update(push_status=Status.PENDING, claim=None, dispatched_at=None, next_attempt_at=now)
    released = Notification.objects.filter(
        push_status=Status.HELD, next_attempt_at__lte=now
    ).update(push_status=Status.PENDING, dispatched_at=None)
    queued = _dispatch_pending(
        Notification.objects.filter(push_status=Status.PENDING, next_attempt_at__lte=now).filter(
            Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - grace)
        ),
        limit=SWEEP_LIMIT,
    )
    if reclaimed or released or queued:
        logger.info(
            "Sweeper: %d stale claims, %d released from quiet hours, %d queued",
            reclaimed,
            released,
            queued,
        )
    return {"reclaimed": reclaimed, "released": released, "queued": queued}


# --- Sending --------------------------------------------------------------------------------


def _quiet_until(
    *, preference: NotificationPreference | None, zone, now: datetime
) -> datetime | None:
    """When the user's quiet hours end, if they are in them now; else None."""
    if preference is None or preference.quiet_start is None or preference.quiet_end is None:
        return None
    local = now.astimezone(zone)
    if not selectors.quiet_hours_active(
        start=preference.quiet_start, end=preference.quiet_end, now=local.time()
    ):
        return None
    end = datetime.combine(local.date(), preference.quiet_end, tzinfo=zone)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), preference.quiet_end, tzinfo=zone)
    return end.astimezone(UTC)


def _zones_by_user(user_ids: set[int]) -> dict[int, object]:
    """The zone of each user's first linked account's utility (for alerts without a utility)."""
    zones: dict[int, object] = {}
    links = (
        AccountLink.objects.filter(user_id__in=user_ids, unlinked_at__isnull=True)
        .select_related("account__utility")
        .order_by("created_at", "id")
    )
    for link in links:
        zones.setdefault(link.user_id, link.account.utility.zone)
    return zones


def _backoff(attempts: int, retry_after: int | None) -> int:
    if retry_after is not None:
        return retry_after
    return min(5 * 2 ** max(attempts - 1, 0), 600)


def notifications_push(*, notification_ids: list[int]) -> dict[str, int]:
    """Push the given alerts to every device of their users.

    1. Take the ids a page at a time, so that the first pushes leave while the rest wait: claim the
       page's rows still pending and due (rows another task holds or finished are skipped).
    2. Per claimed row: a category the user turned off is recorded `off`; a non-urgent alert inside
       the user's quiet hours (in the alert's utility's zone) is `held` until they end.
    3. Send in chunks of a quarter of FCM_MAX_CONCURRENCY messages, never more than that many out
       without their results written; write each chunk down as soon as it is answered, while the
       others travel: `sent`; dead tokens deleted; busy FCM (429/5xx) back to pending after
       Retry-After or a backoff, remembering which devices were reached; no working device left →
       `no_device`, and urgent alerts go by SMS instead; no FCM credentials → `no_config` (logged,
       not sent), with the same SMS fallback.
    """
    claim = uuid.uuid4()
    counts: dict[str, int] = defaultdict(int)
    ids = sorted(notification_ids)
    devices: dict[int, list[Device]] = {}
    # Messages out without their results written are what a worker that dies leaves to be sent
    # again (FCM may have taken them): at most `window`, which is also as many as the connection
    # pool sends at once, so FCM stays busy while this thread writes down the oldest chunk.
    window = max(settings.FCM_MAX_CONCURRENCY, 1)
    out: deque[_Chunk] = deque()
    in_flight = 0
    renewed_at = timezone.now()
    for start in range(0, len(ids), PAGE_ROWS):
        to_send = _page_claim(
            ids[start : start + PAGE_ROWS], claim=claim, devices=devices, counts=counts
        )
        for rows in _chunks(to_send, devices, size=max(window // CHUNKS_OUT, 1)):
            # A row's devices are never split, so a chunk may pass its size: make room for it all.
            while out and in_flight + _messages_count(rows, devices) > window:
                done = out.popleft()
                _chunk_record(done, devices, claim, counts)
                in_flight -= len(done.owners)
                renewed_at = _claim_renew(claim, renewed_at=renewed_at)
            chunk = _chunk_send(rows, devices)
            out.append(chunk)
            in_flight += len(chunk.owners)
    while out:
        _chunk_record(out.popleft(), devices, claim, counts)
    return counts


def _messages_count(rows: list[Notification], devices: dict[int, list[Device]]) -> int:
    return sum(len({d.pk for d in devices[row.user_id]} - set(row.devices_done)) for row in rows)


def _page_claim(
    ids: list[int],
    *,
    claim: uuid.UUID,
    devices: dict[int, list[Device]],
    counts: dict[str, int],
) -> list[Notification]:
    """Claim the rows among `ids` still pending and due; return those to push now, and add their
    users' devices to `devices`. Rows turned off or held for quiet hours are finished here."""
    now = timezone.now()
    claimed = Notification.objects.filter(
        pk__in=ids, push_status=Status.PENDING, next_attempt_at__lte=now
    ).update(
        push_status=Status.SENDING,
        claim=claim,
        claimed_at=now,
        push_attempts=F("push_attempts") + 1,
    )
    if not claimed:
        return []
    rows = list(
        Notification.objects.filter(pk__in=ids, claim=claim, push_status=Status.SENDING)
        .select_related("user", "utility")
        .order_by("id")
    )
    user_ids = {row.user_id for row in rows}
    preferences = {
        p.user_id: p for p in NotificationPreference.objects.filter(user_id__in=user_ids)
    }
    # A user met on an earlier page keeps the devices read then (less any found dead since).
    new_users = user_ids - devices.keys()
    for user_id in new_users:
        devices[user_id] = []
    for device in Device.objects.filter(user_id__in=new_users).order_by("id"):
        devices[device.user_id].append(device)
    needs_zone = {
        row.user_id
        for row in rows
        if row.utility is None
        and preferences.get(row.user_id)
        and preferences[row.user_id].quiet_start
    }
    zones = _zones_by_user(needs_zone) if needs_zone else {}

    to_send: list[Notification] = []
    for row in rows:
        category = c.CATEGORIES.get(row.category)
        urgent = bool(category and category.urgent)
        preference = preferences.get(row.user_id)
        if not urgent and preference and row.category in preference.disabled_categories:
            _finish(row, claim, push_status=Status.OFF)
            counts["off"] += 1
            continue
        zone = row.utility.zone if row.utility else zones.get(row.user_id, UTC)
        until = None if urgent else _quiet_until(preference=preference, zone=zone, now=now)
        if until is not None:
            _finish(row, claim, push_status=Status.HELD, next_attempt_at=until)
            counts["held"] += 1
            continue
        to_send.append(row)
    return to_send


def _claim_renew(claim: uuid.UUID, *, renewed_at: datetime) -> datetime:
    """Renew the claim of the rows still to come once a quarter of the lease has passed: the lease
    measures a silent worker, not a long batch. (Renewing after every chunk rewrote every row still
    to come, each time: most of a batch's database work.)"""
    now = timezone.now()
    if now - renewed_at < timedelta(seconds=settings.NOTIFY_CLAIM_LEASE_SECONDS) / 4:
        return renewed_at
    Notification.objects.filter(claim=claim, push_status=Status.SENDING).update(claimed_at=now)
    return now


def _chunks(rows: list[Notification], devices: dict[int, list[Device]], *, size: int):
    """Rows in groups of about `size` devices; a row's devices are never split."""
    chunk: list[Notification] = []
    count = 0
    for row in rows:
        chunk.append(row)
        count += len(devices[row.user_id])
        if count >= size:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


def _finish(row: Notification, claim: uuid.UUID, **values) -> bool:
    values.setdefault("claim", None)
    return bool(
        Notification.objects.filter(pk=row.pk, claim=claim, push_status=Status.SENDING).update(
            **values
        )
    )


@dataclass
class _Chunk:
    rows: list[Notification]
    owners: list[Notification]  # the row of each message, in order
    sending: PushSending


def _chunk_send(rows: list[Notification], devices: dict[int, list[Device]]) -> _Chunk:
    """Start pushing the rows to the devices they have not reached yet."""
    messages: list[PushMessage] = []
    owners: list[Notification] = []
    for row in rows:
        category = c.CATEGORIES.get(row.category)
        done = set(row.devices_done)
        for device in devices[row.user_id]:
            if device.pk in done:
                continue
            messages.append(
                PushMessage(
                    device_id=device.pk,
                    token=device.token,
                    fid=device.fid,
                    platform=device.platform,
                    title=row.title,
                    body=row.body,
                    data={**row.data, "notification_id": str(row.pk)},
                    urgent=bool(category and category.urgent),
                    ttl=category.ttl if category else timedelta(hours=12),
                    collapse_id=f"n{row.pk}",
                )
            )
            owners.append(row)
    return _Chunk(rows=rows, owners=owners, sending=push_send_start(messages=messages))


def _chunk_record(
    chunk: _Chunk,
    devices: dict[int, list[Device]],
    claim: uuid.UUID,
    counts: dict[str, int],
) -> None:
    """Wait for a chunk's answers and write them down (see notifications_push, step 3)."""
    rows, results = chunk.rows, chunk.sending.results()
    reached: dict[int, list[int]] = defaultdict(list)
    retry_after: dict[int, int | None] = {}
    dead_devices: set[int] = set()
    not_configured: set[int] = set()
    for row, result in zip(chunk.owners, results, strict=True):
        if result.outcome == Outcome.SENT:
            reached[row.pk].append(result.device_id)
        elif result.outcome == Outcome.NOT_CONFIGURED:
            not_configured.add(row.pk)
        elif result.outcome == Outcome.REMOVE:
            dead_devices.add(result.device_id)
            logger.info("Removing device %s: FCM says %s", result.device_id, result.detail)
        elif result.outcome == Outcome.RETRY:
            # The longest Retry-After among a row's devices decides when it is tried again.
            previous = retry_after.get(row.pk)
            retry_after[row.pk] = max(
                (v for v in (previous, result.retry_after) if v is not None), default=None
            )
        else:
            logger.warning("Push to device %s failed: %s", result.device_id, result.detail)
    metrics.push_results(
        (row.utility and row.utility.code, r.outcome)
        for row, r in zip(chunk.owners, results, strict=True)
    )
    if dead_devices:
        Device.objects.filter(pk__in=dead_devices).delete()
        for owned in devices.values():
            owned[:] = [d for d in owned if d.pk not in dead_devices]

    now = timezone.now()
    fully_sent: list[int] = []
    sms_rows: list[Notification] = []
    for row in rows:
        done = [*row.devices_done, *reached.get(row.pk, [])]
        # pushed_at: when a phone first took the alert (outage notices count from it), kept
        # through retries of the row's other devices; null while none has.
        pushed_at = row.pushed_at or (now if done else None)
        if row.pk in retry_after:
            if row.push_attempts >= settings.NOTIFY_MAX_PUSH_ATTEMPTS:
                _finish(
                    row, claim, push_status=Status.FAILED, devices_done=done, pushed_at=pushed_at
                )
                counts["failed"] += 1
                if not done:
                    sms_rows.append(row)
                continue
            delay = _backoff(row.push_attempts, retry_after[row.pk])
            due = now + timedelta(seconds=delay)
            if _finish(
                row,
                claim,
                push_status=Status.PENDING,
                devices_done=done,
                next_attempt_at=due,
                dispatched_at=due,
                pushed_at=pushed_at,
            ):
                counts["retry"] += 1
                push_dispatch(
                    notification_ids=[row.pk], countdown=delay, bulk=row.fanout_id is not None
                )
        elif done:
            fully_sent.append(row.pk)
        elif row.pk in not_configured:
            # Logged, not sent: no phone took it. It is recorded as such, and an urgent alert
            # takes the SMS fallback exactly as a push that reached no device does: a consumer
            # must not miss a disconnection warning because this deployment has no FCM key.
            _finish(row, claim, push_status=Status.NOT_CONFIGURED)
            counts["not_configured"] += 1
            sms_rows.append(row)
        else:
            _finish(row, claim, push_status=Status.NO_DEVICE)
            counts["no_device"] += 1
            sms_rows.append(row)
    if fully_sent:
        counts["sent"] += Notification.objects.filter(
            pk__in=fully_sent, claim=claim, push_status=Status.SENDING
        ).update(
            push_status=Status.SENT, pushed_at=Coalesce(F("pushed_at"), Value(now)), claim=None
        )
    _sms_fallback(sms_rows)


def _sms_fallback(rows: list[Notification]) -> None:
    """Urgent alerts that reached no device go by SMS, once."""
    from notifications.tasks import send_sms

    for row in rows:
        category = c.CATEGORIES.get(row.category)
        if not (category and category.urgent and row.user.phone):
            continue
        if not Notification.objects.filter(pk=row.pk, sms_status="").update(sms_status="queued"):
            continue
        try:
            send_sms.delay(
                row.user.phone,
                f"{row.title}: {row.body}",
                row.utility.code if row.utility else None,
            )
        except (OperationalError, OSError) as exc:
            Notification.objects.filter(pk=row.pk).update(sms_status="")
            logger.warning(
                "Broker unavailable, SMS fallback for alert %s not queued: %s", row.pk, exc
            )
