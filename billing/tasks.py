from __future__ import annotations

import logging

from celery import shared_task

from billing import bills, charging, relay
from billing.headend import TransientHeadEndError

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
    count, accounts = charging.charges_run(shard=shard, shards=shards)
    ordered = sorted(accounts)
    for start in range(0, len(ordered), 200):
        accounts_balance_changed.delay(ordered[start : start + 200])
    if count >= charging.PASS_LIMIT:
        charge_shard.delay(shard, shards)
    return count


@shared_task(acks_late=True)
def accounts_balance_changed(account_ids: list[int]) -> None:
    """After a charging pass: the balance checks of its accounts, 200 to a task; only those whose
    check could do anything run it (billing.selectors.balance_checks_due)."""
    from billing import selectors, services

    for account_id in selectors.balance_checks_due(account_ids=account_ids):
        services.account_balance_changed(account_id=account_id)


@shared_task(acks_late=True)
def account_balance_changed(account_id: int, topup_id: str | None) -> None:
    from billing import services

    services.account_balance_changed(account_id=account_id, topup_id=topup_id)


@shared_task(
    acks_late=True, autoretry_for=(TransientHeadEndError,), retry_backoff=True, max_retries=5
)
def relay_dispatch(command_id: str) -> None:
    relay.relay_dispatch(command_id=command_id)


@shared_task
def relay_due() -> int:
    due = relay.relay_due()
    for command_id in due:
        relay_dispatch.delay(command_id)
    return len(due)


@shared_task
def bills_run() -> int:
    """Beat, daily: issue last month's postpaid bills, fine what is overdue, flag arrears."""
    return bills.bills_daily()


@shared_task(bind=True, max_retries=8)
def simulated_gateway_notify(self, reference: str, succeeded: bool) -> None:
    """The simulated gateway's side: POST the signed outcome to our webhook, retrying like a real one."""
    import requests
    from django.conf import settings

    from billing.gateway import GATEWAYS
    from billing.models import TopUp

    topup = TopUp.objects.get(gateway="simulated", gateway_reference=reference)
    gateway = GATEWAYS["simulated"]
    body = gateway.event_body(
        reference=reference, amount=topup.amount, currency=topup.currency, succeeded=succeeded
    )
    try:
        response = requests.post(
            f"{settings.PUBLIC_BASE_URL}/api/v1/payments/webhooks/simulated/",
            data=body,
            headers={"Content-Type": "application/json", "Sim-Signature": gateway.sign(body)},
            timeout=10,
        )
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 300)) from exc
    if response.status_code >= 500:
        raise self.retry(countdown=min(5 * 2**self.request.retries, 300))
