from __future__ import annotations

import logging

from celery import shared_task

from core.phone import phone_mask
from notifications import delivery
from notifications.sms import PermanentSmsError, TransientSmsError, sms_send

logger = logging.getLogger(__name__)


# Two tasks with one body, so that each has its queue (config/celery.py: ROUTES): a one-time code
# someone is waiting for goes ahead of every other SMS.
@shared_task(bind=True, max_retries=6, acks_late=True)
def send_sms(self, to: str, body: str, utility: str | None = None) -> None:
    """Deliver one SMS about `utility` (its code). Transient gateway errors retry with
    exponential backoff (or Retry-After)."""
    _sms_deliver(self, to=to, body=body, utility=utility)


@shared_task(bind=True, max_retries=6, acks_late=True)
def send_code_sms(self, to: str, body: str) -> None:
    """Deliver one SMS carrying a sign-in or link code; as send_sms."""
    _sms_deliver(self, to=to, body=body)


def _sms_deliver(task, *, to: str, body: str, utility: str | None = None) -> None:
    try:
        sms_send(to=to, body=body, utility=utility)
    except TransientSmsError as exc:
        countdown = (
            exc.retry_after
            if exc.retry_after is not None
            else min(5 * 2**task.request.retries, 300)
        )
        raise task.retry(exc=exc, countdown=countdown) from exc
    except PermanentSmsError:
        logger.exception("SMS to %s was refused; not retrying", phone_mask(to))


# Push tasks need no Celery retries of their own: a row that could not be sent goes back to
# pending with its own due time and is queued again (delivery.push_dispatch), and the sweeper
# catches any task that is lost. acks_late: a batch taken by a worker that dies is redelivered
# (on Redis after the visibility timeout), and its claims make the redelivery harmless.
# push_batch carries a fan-out's batches (the bulk queue); push_alert one user's alert (alerts).
@shared_task(acks_late=True)
def push_batch(notification_ids: list[int]) -> dict[str, int]:
    return delivery.notifications_push(notification_ids=notification_ids)


@shared_task(acks_late=True)
def push_alert(notification_ids: list[int]) -> dict[str, int]:
    return delivery.notifications_push(notification_ids=notification_ids)


@shared_task(acks_late=True)
def fanout_dispatch(fanout_id: int) -> int:
    return delivery.fanout_dispatch(fanout_id=fanout_id)


@shared_task
def sweep() -> dict[str, int]:
    return delivery.notifications_sweep()
