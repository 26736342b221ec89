from __future__ import annotations

import os

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Exchange, Queue
from kombu.transport.native_delayed_delivery import (
    MAX_LEVEL,
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
    level_name,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("smartmeter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# --- Queues ------------------------------------------------------------------------------------
# Four queues, named after the base queue (CELERY_QUEUE: "smartmeter", or a test run's own), so
# that a `make run` worker never takes a test's tasks. A worker consumes them in this order: a
# sign-in code never waits behind a fan-out. Unrouted tasks (a test fails for any) go to the base
# queue itself, between alerts and bulk.
CODES, PAYMENTS, ALERTS, BULK = "codes", "payments", "alerts", "bulk"
PRIORITY = (CODES, PAYMENTS, ALERTS, "", BULK)

ROUTES = {
    # A person is waiting for it, phone in hand.
    "notifications.tasks.send_code_sms": CODES,
    # Money moved, or is being asked about; a reconnection after payment has a regulated deadline.
    "billing.tasks.account_balance_changed": PAYMENTS,
    "billing.tasks.relay_dispatch": PAYMENTS,
    "billing.tasks.relay_due": PAYMENTS,
    "billing.tasks.topups_reconcile": PAYMENTS,
    "billing.tasks.simulated_gateway_deliver": PAYMENTS,
    "billing.tasks.simulated_gateway_deliveries": PAYMENTS,
    "servicerequests.tasks.sync_estimate_payments": PAYMENTS,
    # A saved card charged: once, and retried on the payments queue (docs/auto-topup.md).
    "billing.tasks.auto_topup_charge": PAYMENTS,
    "billing.tasks.auto_topups_due": PAYMENTS,
    # One alert to one person.
    "notifications.tasks.send_sms": ALERTS,
    # Consumers whose power went off are told within a minute of their meters' events.
    "outages.tasks.detect_outages": ALERTS,
    "notifications.tasks.push_alert": ALERTS,
    # Work for many at once, and housekeeping: it can wait a minute.
    "notifications.tasks.push_batch": BULK,
    "notifications.tasks.fanout_dispatch": BULK,
    "notifications.tasks.sweep": BULK,
    "billing.tasks.charge_readings": BULK,
    "billing.tasks.charge_shard": BULK,
    "billing.tasks.energy_days_close": BULK,
    "billing.tasks.accounts_balance_changed": BULK,
    "billing.tasks.bills_run": BULK,
    "outages.tasks.send_outage_reminders": BULK,
    "outages.tasks.settle_outage_notices": BULK,
    "outages.tasks.send_outage_notice_sms": BULK,
    "outages.tasks.sweep_outage_notices": BULK,
    "outages.tasks.evaluate_reconnections": BULK,
    "outages.tasks.pay_compensations": BULK,
    "outages.tasks.sweep_outage_detection": BULK,
    "servicerequests.tasks.check_deadlines": BULK,
    "accounts.tasks.purge_spent_codes": BULK,
    "accounts.tasks.flush_expired_tokens": BULK,
    # A city's outage notice is written in chunks ahead of its pushes (docs/outages.md).
    "outages.tasks.stream_outage_notice": ALERTS,
    "meters.tasks.reading_partitions_maintain": BULK,
    "meters.tasks.reading_retention_purge": BULK,
    "billing.tasks.affordability_daily": BULK,
    "insight.tasks.insight_daily": BULK,
    "insight.tasks.insight_chunk": BULK,
}


def queue_name(kind: str, *, base: str | None = None) -> str:
    """The broker's name of one queue ("" is the base queue itself)."""
    base = base or app.conf.task_default_queue
    return f"{base}.{kind}" if kind else base


def queues_by_priority(base: str | None = None) -> list[str]:
    """Every queue's name, most urgent first: what a worker taking everything is given."""
    return [queue_name(kind, base=base) for kind in PRIORITY]


def route_task(name, args, kwargs, options, task=None, **kw):
    kind = ROUTES.get(name)
    return {"queue": queue_name(kind)} if kind else None


app.conf.task_routes = (route_task,)


AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def broker_is_amqp(url: str | None = None) -> bool:
    """RabbitMQ (docs/brokers.md), rather than Redis or the embedded default's filesystem."""
    return str(url or app.conf.broker_url or "").startswith(AMQP_SCHEMES)


@app.on_after_configure.connect
def _queues_configure(sender, **kwargs) -> None:
    conf = sender.conf
    # Declared in priority order: a worker started without --queues consumes every one in it.
    if broker_is_amqp(conf.broker_url):
        # RabbitMQ: durable quorum queues, kept on disk and replicated over the cluster's nodes
        # (a message counts once a majority has it), so a broker restart or a lost node loses no
        # task (docs/brokers.md). Topic exchanges, because Celery's native delayed delivery
        # (countdowns, retries' backoff) routes a delayed task back through its queue's exchange
        # and cannot through a direct one: the worker would then hold the task unacknowledged
        # until its time, which quorum queues (no global QoS) do not allow for. Queues made on
        # demand are made the same way. Quorum queues have no message priorities; nothing here
        # sends any.
        conf.task_queues = [
            Queue(
                n,
                Exchange(n, type="topic"),
                routing_key=n,
                queue_arguments={"x-queue-type": "quorum"},
            )
            for n in queues_by_priority()
        ]
        conf.task_default_queue_type = "quorum"
        conf.task_default_exchange_type = "topic"
        conf.task_create_missing_queue_type = "quorum"
        conf.task_create_missing_queue_exchange_type = "topic"
        conf.broker_native_delayed_delivery_queue_type = "quorum"
    else:
        # The same exchange and routing key Celery would give each queue it creates on demand.
        conf.task_queues = [Queue(n, Exchange(n), routing_key=n) for n in queues_by_priority()]
    # On Redis the worker's BRPOP lists the queues in that order and Redis answers from the first
    # that holds a message ("priority"; kombu's default, round robin, would take turns). kombu's
    # filesystem transport (the embedded default) has no such option and always takes turns: an
    # urgent task waits for at most one task of each other queue.
    conf.broker_transport_options = {
        **(conf.broker_transport_options or {}),
        "queue_order_strategy": "priority",
    }


_delayed_delivery_declared = False


@signals.before_task_publish.connect
def _delayed_delivery_declare(exchange=None, **kwargs) -> None:
    """A task with a countdown on RabbitMQ is published to the first of Celery's delayed-delivery
    exchanges, which a worker declares (and binds our queues to) when it starts. A process that
    publishes one before any worker ever ran on the vhost (a new deployment's web) would send it
    to no exchange, and RabbitMQ would drop it: declare them first, once per process."""
    global _delayed_delivery_declared
    if _delayed_delivery_declared or getattr(exchange, "name", exchange) != level_name(MAX_LEVEL):
        return
    with app.connection_for_write() as connection:
        declare_native_delayed_delivery_exchanges_and_queues(
            connection, app.conf.broker_native_delayed_delivery_queue_type
        )
        for queue in app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()  # its exchange must exist to be bound
            bind_queue_to_native_delayed_delivery_exchange(connection, queue)
    _delayed_delivery_declared = True


@signals.celeryd_after_setup.connect
def _base_queue_means_all(sender, instance, conf, **kwargs) -> None:
    """`--queues <base>` (as before there were several) takes every queue, in priority order."""
    queues = instance.app.amqp.queues
    if list(queues.consume_from) == [conf.task_default_queue]:
        queues.select(queues_by_priority())


app.conf.beat_schedule = {
    # Billing: charge new readings, send relay commands whose time has come, postpaid bills.
    "charge-readings": {"task": "billing.tasks.charge_readings", "schedule": 60.0},
    "close-energy-days": {
        "task": "billing.tasks.energy_days_close",
        "schedule": crontab(minute=3),
    },
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
    # Meters' failures no woken detector run has looked at: docs/events.md.
    "outage-detection": {"task": "outages.tasks.sweep_outage_detection", "schedule": 30.0},
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
    # Affordability (docs/affordability.md): automatic top-ups due by schedule or retry; each
    # utility's new local day: debt recovered at its daily rate, emergency credit past its date.
    "auto-topups-due": {"task": "billing.tasks.auto_topups_due", "schedule": 60.0},
    "affordability-daily": {
        "task": "billing.tasks.affordability_daily",
        "schedule": crontab(minute=5),
    },
    # Insight (docs/insight.md): each utility's finished local day read once per account for the
    # high-usage and sanctioned-load alerts.
    "insight-daily": {"task": "insight.tasks.insight_daily", "schedule": crontab(minute=35)},
    # Readings (docs/storage.md, Growth): monthly partitions made ahead on PostgreSQL, months past
    # every utility's retention archived, a shorter retention's own rows deleted in batches.
    "reading-partitions": {
        "task": "meters.tasks.reading_partitions_maintain",
        "schedule": crontab(hour=2, minute=23),
    },
}
