"""An outage's notice streamed to its people: the first chunk in the step's transaction, the
rest a chunk a task after commit, stopped once what it says no longer holds."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from notifications.models import Fanout
from notifications.services import fanout_finish, fanout_open, fanout_write
from outages import selectors
from outages.models import Outage
from outages.services.common import _fanout_key, _notice_context, _notice_step, _stream_later
from outages.services.notices import _notices_open, _settle_later, notice_live

logger = logging.getLogger(__name__)
# Affected meters whose people one chunk of a streamed notice tells: one INSERT of inbox rows,
# committed with its pushes queued, about a second of a worker's time at a city's scale.
NOTICE_STREAM_CHUNK = 5000


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
            # Every account's notice row now, with one INSERT … SELECT: an account the stream
            # has not reached when the outage begins (a stalled or stopped stream) is then one
            # not told, owed what the notice standard says, never one told at publication.
            _notices_open(outage, accounts=selectors.outage_account_ids(outage=outage))
        _stream_chunk(outage, fanout)


def _stream_chunk(outage: Outage, fanout: Fanout) -> None:
    """Write the notice's next chunk: its people's inbox rows (the accounts' OutageNotice rows
    were all written with the step, _notify). After commit its pushes are queued, then the next
    chunk, or once all are written, the settling of the schedule's per-account notices (they
    read the pushes' outcome, so they wait for the last chunk)."""
    page = selectors.outage_audience_page(
        outage=outage, after=fanout.written_through, size=NOTICE_STREAM_CHUNK
    )
    if page.last is not None:
        fanout_write(fanout=fanout, user_ids=page.user_ids, through=page.last)
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
        _stream_chunk(outage, fanout)
        return fanout.audience_size - written
