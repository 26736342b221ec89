from __future__ import annotations

import logging
from datetime import date

from celery import shared_task
from django.utils import timezone

from meters import partitions

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def reading_partitions_maintain() -> int:
    """Beat, daily: month partitions made ahead and expired months detached
    (meters.partitions.partitions_maintain); each utility's own expired rows deleted by a task per
    partition. Returns how many such tasks were queued."""
    purges = partitions.partitions_maintain(today=timezone.now().date())
    for purge in purges:
        month = purge.month.isoformat() if purge.month else None
        reading_retention_purge.delay(purge.utility_id, month)
    return len(purges)


@shared_task(acks_late=True)
def reading_retention_purge(utility_id: int, month: str | None, after_meter_id: int = 0) -> None:
    """One utility's expired rows of one month (None: of the DEFAULT partitions), a bounded step
    at a time: a step that stops before the end queues the next from where it stopped. A step
    lost with its worker is run again by the next day's pass (deleting twice deletes nothing)."""
    after = partitions.retention_purge_step(
        utility_id=utility_id,
        month=date.fromisoformat(month) if month else None,
        today=timezone.now().date(),
        after_meter_id=after_meter_id,
    )
    if after is not None:
        reading_retention_purge.delay(utility_id, month, after)
