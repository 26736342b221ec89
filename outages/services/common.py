"""What the outage steps, the streamed notice and the per-account notices share: the outage's
row lock, which notice is the one of the schedule in force, its fan-out key and context, and
queueing a stream's next chunk after commit."""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError

from core.errors import NotFound
from notifications import categories as c
from outages import selectors
from outages.models import Outage

logger = logging.getLogger(__name__)


def _locked(outage_id: object) -> Outage:
    """The outage, its row locked (FOR UPDATE) for the step or sweep about to change it."""
    outage = (
        Outage.objects.select_for_update(of=("self",))
        .select_related("utility")
        .filter(pk=outage_id)
        .first()
    )
    if outage is None:
        raise NotFound("No such outage.", code="outage_not_found")
    return outage


def _notice_context(outage: Outage) -> dict[str, Any]:
    return selectors.outage_notice_context(outage=outage)


def _fanout_key(outage: Outage, step: str) -> str:
    return f"outage:{outage.pk}:{step}"


def _notice_step(outage: Outage) -> tuple[str, str]:
    """The category and fan-out step of the notice of an outage's schedule in force: a planned
    outage's announcement, or an unplanned one's "power is off, expected back by"."""
    if outage.kind == Outage.Kind.UNPLANNED:
        return c.OUTAGE_UNPLANNED_ETA, f"unplanned:v{outage.version}"
    if outage.version <= 1:
        return c.OUTAGE_PLANNED, f"published:v{outage.version}"
    return c.OUTAGE_RESCHEDULED, f"rescheduled:v{outage.version}"


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
