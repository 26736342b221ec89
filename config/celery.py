from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("smartmeter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Billing: charge new readings, send relay commands whose time has come, postpaid bills.
    "charge-readings": {"task": "billing.tasks.charge_readings", "schedule": 60.0},
    "relay-due": {"task": "billing.tasks.relay_due", "schedule": 60.0},
    "postpaid-bills": {"task": "billing.tasks.bills_run", "schedule": crontab(hour=1, minute=13)},
    # Payments: settle top-ups whose webhook never came by asking the gateway (docs/payments.md).
    "reconcile-topups": {"task": "billing.tasks.topups_reconcile", "schedule": 60.0},
    # The simulated gateway's own retries of undelivered outcomes (a real gateway runs its own).
    "simulated-gateway-deliveries": {
        "task": "billing.tasks.simulated_gateway_deliveries",
        "schedule": 10.0,
    },
    "purge-spent-one-time-codes": {
        "task": "accounts.tasks.purge_spent_codes",
        "schedule": crontab(minute=17),
    },
    "flush-expired-refresh-tokens": {
        "task": "accounts.tasks.flush_expired_tokens",
        "schedule": crontab(hour=3, minute=41),
    },
    # Re-dispatches alerts left behind by a dead worker or a broker outage; releases quiet hours.
    "sweep-notifications": {
        "task": "notifications.tasks.sweep",
        "schedule": float(os.environ.get("NOTIFY_SWEEP_SECONDS") or 60),  # as settings reads it
    },
    # Outages: evening-before reminders (each once per outage version), late reconnections,
    # and compensations whose exemption window has closed.
    "outage-reminders": {"task": "outages.tasks.send_outage_reminders", "schedule": 300.0},
    # Notices whose push is still on its way, SMS fallbacks a dead worker left: docs/outages.md.
    "outage-notices": {"task": "outages.tasks.sweep_outage_notices", "schedule": 60.0},
    "evaluate-reconnections": {
        "task": "outages.tasks.evaluate_reconnections",
        "schedule": crontab(minute="*/15"),
    },
    "pay-compensations": {"task": "outages.tasks.pay_compensations", "schedule": crontab(minute=7)},
    # Service requests: estimates paid through the gateway start their clock; missed deadlines.
    "service-request-payments": {
        "task": "servicerequests.tasks.sync_estimate_payments",
        "schedule": 60.0,
    },
    "service-request-deadlines": {
        "task": "servicerequests.tasks.check_deadlines",
        "schedule": crontab(minute="*/15"),
    },
}
