from __future__ import annotations

import logging
from datetime import date

from celery import shared_task

from insight import daily

logger = logging.getLogger(__name__)


@shared_task
def insight_daily() -> int:
    """Beat, hourly: each active utility's last finished local day, once, starts a chain of
    chunks over its accounts (docs/insight-alerts.md)."""
    due = daily.insight_days_due()
    for utility_id, day in due:
        insight_chunk.delay(utility_id, day.isoformat(), 0)
    return len(due)


@shared_task(acks_late=True)
def insight_chunk(utility_id: int, day: str, after: int) -> int:
    """One keyset chunk of a utility's accounts for one local day. A full chunk queues the next
    before doing its own work, so that other workers take the following chunks meanwhile; a
    redelivered chunk (a worker lost) is harmless, each account's baseline being claimed once."""
    from accounts.models import Utility

    local_day = date.fromisoformat(day)
    utility = Utility.objects.get(pk=utility_id)
    account_ids = daily.accounts_chunk(utility=utility, day=local_day, after=after)
    if len(account_ids) == daily.CHUNK_SIZE:
        insight_chunk.delay(utility_id, day, account_ids[-1])
    moved = daily.insight_accounts_update(
        utility_id=utility_id, day=local_day, account_ids=account_ids
    )
    logger.info(
        "insight: utility %s day %s after %s: %s accounts, %s moved",
        utility_id,
        day,
        after,
        len(account_ids),
        moved,
    )
    return moved
