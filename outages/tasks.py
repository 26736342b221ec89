"""Periodic work for outages and guaranteed standards (config/celery.py schedules them)."""

from __future__ import annotations

from celery import shared_task

from outages import services, standards


@shared_task(acks_late=True)
def send_outage_reminders() -> int:
    """The evening-before reminders that are due; each goes once per outage version."""
    return services.outage_reminders_send()


@shared_task(acks_late=True)
def evaluate_reconnections() -> int:
    """Reconnections after payment completed recently that missed their standard."""
    from django.utils import timezone

    return standards.reconnections_evaluate(now=timezone.now())


@shared_task(acks_late=True)
def pay_compensations() -> int:
    """Credit compensations whose exemption window has closed (or whose month is running out)."""
    return standards.compensations_pay_due()
