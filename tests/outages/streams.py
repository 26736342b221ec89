"""What the streamed-notice tests share: publishing with chunks of three and running the work a
step queues as the workers would (their fixtures, `small_chunks` and `city`: conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine

from notifications.models import Notification
from outages import services

START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # Thursday 09:00 in Riyadh
PUBLISH = START - timedelta(hours=72)
CHUNK = 3  # affected meters a chunk: 10 meters are four chunks


def publish_keeping_work(outage, capture):
    """Publish, keeping the work queued for after commit (pushes, next chunk) to run by hand."""
    with time_machine.travel(PUBLISH, tick=False), capture(execute=False) as queued:
        services.outage_publish(outage_id=outage.pk, now=PUBLISH)
    return list(queued)


def run_work(callbacks, capture):
    """Run queued work as workers would, and all it queues in turn (eager tasks)."""
    with time_machine.travel(PUBLISH, tick=False), capture(execute=True):
        for callback in callbacks:
            callback()


def inbox_of(category):
    return sorted(Notification.objects.filter(category=category).values_list("user_id", flat=True))
