"""An outage's notice streamed to its people: the first chunk in the step's transaction, the
rest a chunk a task after commit, stopped once what it says no longer holds.

A planned outage's snapshot streams with its notice: publishing writes the scope's first chunk of
meters (by id) with their accounts' notices and people, and each chunk of the notice's stream
writes the next (snapshot_fill), so a city's publication commits in about a second and its first
pushes leave at once. Until the last chunk, the snapshot holds the meters whose people were told:
the consumer API shows the outage to them, a cancellation tells them. A step that needs every
meter (the start, a reschedule, the evening-before reminder) writes the rest first
(snapshot_complete), with the notices of the accounts it adds: an account whose notice never
went out is then one not told, owed what the notice standard says."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.sql import insert_select
from notifications.models import Fanout
from notifications.services import fanout_finish, fanout_open, fanout_write
from outages import selectors
from outages.models import AffectedMeter, Outage
from outages.services.common import _fanout_key, _notice_context, _notice_step, _stream_later
from outages.services.notices import _notices_open, _settle_later, notice_live

logger = logging.getLogger(__name__)
# Affected meters whose people one chunk of a streamed notice tells: one INSERT of inbox rows,
# committed with its pushes queued, about a second of a worker's time at a city's scale.
NOTICE_STREAM_CHUNK = 5000
# A planned outage's snapshot is streamed only when the outage begins at least this long after
# its publication (a city's stream takes a few minutes); nearer, it is written whole at publish.
# The sweeper writes the rest of a snapshot still streaming this long before the start, so the
# meters' own failure reports (detection) and the consumers' fault reports find every meter.
SNAPSHOT_STREAM_LEAD = timedelta(hours=1)


def snapshot_fill(outage: Outage, *, limit: int | None = None) -> int:
    """Write the snapshot's next meters: the scope's meters after `snapshot_through` (by id), all
    of them or the next `limit`, each with its account now (one INSERT … SELECT). A planned
    outage's published notice gets a row for each account added (a snapshot being streamed grows
    only with its notice). `snapshot_through` is left at the last meter written while more may
    follow, and cleared once the scope is written. Returns how many meters were written."""
    # Where the snapshot's rows end, read from them, not from the outage row, which a stale save
    # could have moved back.
    after = _snapshot_end(outage) if outage.snapshot_through is not None else None
    scope = selectors.outage_scope_meters(outage=outage).order_by("pk").values("id", "account_id")
    if after is not None:
        scope = scope.filter(pk__gt=after)
    if limit is not None:
        scope = scope[:limit]
    written = insert_select(
        AffectedMeter,
        ["outage_id", "meter_id", "account_id"],
        "%s, src.id, src.account_id",
        scope,
        [outage.pk],
    )
    if after is not None and written and outage.kind == Outage.Kind.PLANNED and notice_live(outage):
        added = AffectedMeter.objects.filter(outage=outage, meter_id__gt=after)
        _notices_open(
            outage,
            accounts=added.exclude(account=None).values("account_id").order_by().distinct(),
            more=True,
        )
    through = None
    if limit is not None and written == limit:
        through = _snapshot_end(outage)
    if through != outage.snapshot_through:
        Outage.objects.filter(pk=outage.pk).update(snapshot_through=through)
        outage.snapshot_through = through
    return written


def _snapshot_end(outage: Outage) -> int | None:
    """The last meter in the outage's snapshot (the (outage, meter) index's last entry)."""
    return outage.affected.aggregate(last=Max("meter_id"))["last"]


def snapshot_complete(outage: Outage) -> int:
    """Write whatever of a streamed snapshot is left (the outage row locked by the caller), for a
    step that reads every meter. Returns how many meters were added."""
    if outage.snapshot_through is None:
        return 0
    return snapshot_fill(outage)


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
        if outage.kind == Outage.Kind.PLANNED and step == _notice_step(outage)[1]:
            # Every account's notice row now, with one INSERT … SELECT (of a streamed snapshot,
            # the accounts of its first chunk; each later chunk adds its own): an account the
            # stream has not reached when the outage begins (a stalled or stopped stream) is
            # then one not told, owed what the notice standard says, never one told at
            # publication.
            _notices_open(outage, accounts=selectors.outage_account_ids(outage=outage))
        _stream_chunk(outage, fanout, fill=False)


def _stream_chunk(outage: Outage, fanout: Fanout, *, fill: bool) -> None:
    """Write the notice's next chunk: its people's inbox rows (the accounts' OutageNotice rows
    were written with the step, _notify, or with their chunk of a streamed snapshot). With
    `fill`, the version's own notice first writes the snapshot's next chunk while it streams.
    After commit its pushes are queued, then the next chunk, or once all are written, the
    settling of the schedule's per-account notices (they read the pushes' outcome, so they wait
    for the last chunk)."""
    filling = outage.snapshot_through is not None and fanout.dedupe_key == _fanout_key(
        outage, _notice_step(outage)[1]
    )
    if fill and filling:
        snapshot_fill(outage, limit=NOTICE_STREAM_CHUNK)
    page = selectors.outage_audience_page(
        outage=outage, after=fanout.written_through, size=NOTICE_STREAM_CHUNK
    )
    if page.last is not None:
        fanout_write(fanout=fanout, user_ids=page.user_ids, through=page.last)
    if page.more or (filling and outage.snapshot_through is not None):
        after = fanout.written_through
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
        if claimed != 1:
            return 0
        if outage is None:  # deleted meanwhile: nothing left to tell, nor for the sweeper
            fanout_finish(fanout=Fanout.objects.get(pk=fanout_id), state=Fanout.State.STOPPED)
            return 0
        fanout = Fanout.objects.get(pk=fanout_id)
        if not _notice_holds(outage, fanout):
            fanout_finish(fanout=fanout, state=Fanout.State.STOPPED)
            logger.info("Notice %s no longer holds: stopped", fanout.dedupe_key)
            # Its accounts' notices still waiting are dropped now, not at the next sweep.
            transaction.on_commit(lambda: _settle_later(outage.pk))
            return 0
        written = fanout.audience_size
        _stream_chunk(outage, fanout, fill=True)
        return fanout.audience_size - written
