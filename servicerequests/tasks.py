"""Periodic work for service requests (config/celery.py schedules them)."""

from __future__ import annotations

from celery import shared_task

from servicerequests import deadlines, estimates


@shared_task(acks_late=True)
def sync_estimate_payments() -> int:
    """Estimates whose payment succeeded: debit them back, mark the request paid, start its clock."""
    return estimates.estimate_payments_sync()


@shared_task(acks_late=True)
def check_deadlines() -> int:
    """Open requests past their deadline: mark them, and record a missed connection's compensation."""
    return deadlines.deadlines_check()
