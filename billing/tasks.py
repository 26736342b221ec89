from __future__ import annotations

import logging

from celery import shared_task

from billing import bills, charging, relay

logger = logging.getLogger(__name__)


@shared_task
def charge_readings() -> int:
    """Beat, every minute: one charging task per shard, so that every worker can take a share."""
    from django.conf import settings

    for shard in range(settings.CHARGE_SHARDS):
        charge_shard.delay(shard, settings.CHARGE_SHARDS)
    return settings.CHARGE_SHARDS


@shared_task(acks_late=True)
def charge_shard(shard: int, shards: int) -> int:
    """Charge what changed in one shard of the meters; then check each touched account. A shard
    with more work than one pass takes queues itself again."""
    from billing import selectors

    count, accounts = charging.charges_run(shard=shard, shards=shards)
    if count >= charging.PASS_LIMIT:
        charge_shard.delay(shard, shards)
    # The pass's accounts sorted in a few grouped queries; only those whose check could do
    # anything are queued, 200 to a task: a city of healthy balances queues almost nothing. If
    # the sorting fails, every account is queued (each task sorts its own again).
    ordered = sorted(accounts)
    try:
        due = selectors.balance_checks_due(account_ids=ordered)
    except Exception:
        logger.exception("balance checks of a charging pass not sorted: queueing them all")
        due = ordered
    for start in range(0, len(due), 200):
        accounts_balance_changed.delay(due[start : start + 200])
    return count


@shared_task(acks_late=True)
def energy_days_close() -> int:
    """Beat, hourly: post each account's open energy day once it is over in its utility's zone
    (one ledger entry per account per day; billing.energy_days)."""
    from billing.energy_days import energy_days_close as close

    return close()


@shared_task(acks_late=True)
def accounts_balance_changed(account_ids: list[int]) -> None:
    """After a charging pass: the balance checks of the accounts it found due, 200 to a task (each
    sorted again here, since a top-up may have come between: billing.selectors.balance_checks_due)."""
    from billing import selectors, services

    for account_id in selectors.balance_checks_due(account_ids=account_ids):
        services.account_balance_changed(account_id=account_id)


@shared_task(acks_late=True)
def account_balance_changed(account_id: int, topup_id: str | None) -> None:
    from billing import services

    services.account_balance_changed(account_id=account_id, topup_id=topup_id)


@shared_task(acks_late=True)
def relay_dispatch(command_id: str) -> None:
    """Send one relay command. The retry policy is the service's, not Celery's: a transient
    failure puts the command back to waiting with a later not_before (relay.RETRY_DELAYS, for a
    disconnect an allowed time) and relay_due sends it again through the same send-time checks as
    the first send (friendly hours, debt, payments, the meter's holder)."""
    relay.relay_dispatch(command_id=command_id)


@shared_task
def relay_due() -> int:
    """Beat, every minute: dead workers' commands, deferred reconnects, and the waiting commands
    that are due, each sent by its own relay_dispatch."""
    due = relay.relay_due()
    for command_id in due:
        relay_dispatch.delay(command_id)
    return len(due)


@shared_task
def bills_run() -> int:
    """Beat, daily: issue last month's postpaid bills, fine what is overdue, flag arrears, remind
    of bills due soon; then the late path (formal notices, removals due, paid notices cancelled)."""
    from billing import removals

    issued = bills.bills_daily()
    removals.removals_daily()
    return issued


@shared_task
def topups_reconcile() -> dict[str, int]:
    """Beat, every minute: ask the gateway about top-ups pending too long and settle them. A full
    batch queues the next one at once (unless the gateway is unreachable: then the next run)."""
    from django.conf import settings

    from billing import reconcile

    counts = reconcile.topups_reconcile()
    if counts["due"] >= settings.PAYMENT_RECONCILE_BATCH and not counts["unreachable"]:
        topups_reconcile.delay()
    return dict(counts)


# The simulated gateway's own work (billing.gateway): a real gateway does this on its servers.


@shared_task
def simulated_gateway_deliver(reference: str) -> None:
    """Right after a payment on the simulated page: send its outcome without waiting for the beat.
    Losing this task loses nothing: the outcome is due in the gateway's table until delivered."""
    from billing import gateway

    gateway.simulated_deliveries_send(reference=reference)


@shared_task
def simulated_gateway_deliveries() -> dict[str, int]:
    """Beat, every 10 seconds: the simulated gateway sends (again) the outcomes that are due."""
    from billing import gateway

    counts = gateway.simulated_deliveries_send()
    if counts["delivered"] + counts["retrying"] + counts["given_up"] >= gateway.DELIVERY_BATCH:
        simulated_gateway_deliveries.delay()
    return counts


@shared_task
def affordability_daily() -> dict[str, int]:
    """Beat, hourly: emergency credits past their repayment date, and the daily debt recovery of
    each utility whose local day has just begun (billing.affordability.affordability_daily)."""
    from billing import affordability

    return affordability.affordability_daily()


# Automatic top-ups (billing.autotopup; docs/auto-topup.md).


@shared_task
def auto_topups_due() -> int:
    """Beat, every minute: start the schedules that are due, then charge every run that is due
    (new, waiting for its retry, or left by a dead worker), each by its own auto_topup_charge."""
    from billing import autotopup

    run_ids = autotopup.auto_topups_due()
    for run_id in run_ids:
        auto_topup_charge.delay(run_id)
    return len(run_ids)


@shared_task(acks_late=True)
def auto_topup_charge(run_id: str) -> str:
    """Charge one run once. The retry policy is the service's, not Celery's: a transient failure
    sets the run's next attempt (autotopup.RETRY_DELAYS) in its row, and auto_topups_due charges
    it again, through the same checks, with the same idempotency key."""
    from billing import autotopup

    return autotopup.auto_topup_charge(run_id=run_id)
