from __future__ import annotations

from celery import shared_task
from django.core.management import call_command

from accounts import services


@shared_task
def purge_spent_codes() -> int:
    return services.otp_purge_spent()


@shared_task
def flush_expired_tokens() -> None:
    call_command("flushexpiredtokens")
