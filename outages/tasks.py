"""Periodic work for outages and guaranteed standards (config/celery.py schedules them)."""

from __future__ import annotations

from celery import shared_task

from outages import services, standards


@shared_task(acks_late=True)
def send_outage_reminders() -> int:
    """The evening-before reminders that are due; each goes once per outage version."""
    return services.outage_reminders_send()


# Notice tasks need no Celery retries of their own: a notice whose SMS could not go is put back
# with its own due time and queued again, and the sweeper catches any task that is lost.
@shared_task(acks_late=True)
def settle_outage_notices(outage_id: int) -> dict[str, int]:
    """How the notice of a planned outage reaches each affected account: push or SMS."""
    return services.outage_notices_settle(outage_id=outage_id)


@shared_task(acks_late=True)
def stream_outage_notice(outage_id: int, fanout_id: int, after: int) -> int:
    """The next chunk of an outage's notice to its people (a city's is streamed after the step
    commits); it queues the one after. Run twice at one cursor, it writes once."""
    return services.outage_notice_stream(outage_id=outage_id, fanout_id=fanout_id, after=after)


@shared_task(acks_late=True)
def send_outage_notice_sms(notice_ids: list[int]) -> dict[str, int]:
    return services.outage_notices_sms_send(notice_ids=notice_ids)


@shared_task(acks_late=True)
def sweep_outage_notices() -> dict[str, int]:
    """Notices left behind by a lost task, a dead worker or a broker outage (beat, every minute)."""
    return services.outage_notices_sweep()


@shared_task(acks_late=True)
def evaluate_reconnections() -> int:
    """Reconnections after payment completed recently that missed their standard."""
    from django.utils import timezone

    return standards.reconnections_evaluate(now=timezone.now())


@shared_task(acks_late=True)
def pay_compensations() -> int:
    """Credit compensations whose exemption window has closed (or whose month is running out)."""
    return standards.compensations_pay_due()


@shared_task(acks_late=True)
def detect_outages(utility_id: int) -> dict[str, int]:
    """Group the meters' new failures of one utility into outages (woken by each event batch)."""
    from outages.detection import outages_detect

    return outages_detect(utility_id=utility_id)


@shared_task(acks_late=True)
def sweep_outage_detection() -> dict[int, dict[str, int]]:
    """Failures no woken run has looked at yet: a lost task, or a window still open (beat)."""
    from outages.detection import outages_detect_sweep

    return outages_detect_sweep()
