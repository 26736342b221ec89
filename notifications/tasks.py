from __future__ import annotations

import logging

from celery import shared_task

from core.phone import phone_mask
from notifications.sms import PermanentSmsError, TransientSmsError, sms_send

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=6, acks_late=True)
def send_sms(self, to: str, body: str) -> None:
    """Deliver one SMS. Transient gateway errors retry with exponential backoff (or Retry-After)."""
    try:
        sms_send(to=to, body=body)
    except TransientSmsError as exc:
        countdown = (
            exc.retry_after
            if exc.retry_after is not None
            else min(5 * 2**self.request.retries, 300)
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    except PermanentSmsError:
        logger.exception("SMS to %s was refused; not retrying", phone_mask(to))
