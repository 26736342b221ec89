"""Paying into an account one does not hold (docs/sharing.md): the account found by its consumer
id, its holder's name shown masked, the lookups budgeted per user; the top-up then goes through
billing.payments like any other, its payer alone seeing it here."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount, User
from billing.models import TopUp
from billing.relay import policy_for
from core.errors import Conflict, NotFound, RateLimited


def _pay_lookups_throttle(*, user: User) -> None:
    """Count the user's lookups by consumer id in the current hour (in the cache: a lookup
    writes no row to count), refusing past the limit so ids cannot be mined."""
    limit = settings.PAY_LOOKUPS_PER_HOUR
    now = timezone.now()
    window = int(now.timestamp()) // 3600
    key = f"payfor:lookups:{user.pk}:{window}"
    cache.add(key, 0, timeout=3600)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=3600)
        count = 1
    if count > limit:
        wait = (window + 1) * 3600 - int(now.timestamp())
        raise RateLimited(
            "Too many accounts were looked up in the last hour. Try again later.",
            retry_after=max(wait, 1),
            code="too_many_lookups",
        )


def payee_get(*, user: User, utility_code: str, consumer_id: str) -> ConsumerAccount:
    """An account anyone signed in may top up, by its utility and consumer id (throttled per user).
    Unknown: 404; closed, or the utility does not take payments for others: 409."""
    _pay_lookups_throttle(user=user)
    account = (
        ConsumerAccount.objects.select_related("utility")
        .filter(
            Q(utility__code=utility_code, utility__is_active=True),
            consumer_id=(consumer_id or "").strip(),
        )
        .first()
    )
    if account is None:
        raise NotFound("No account has this consumer ID.", code="unknown_consumer")
    if account.status == ConsumerAccount.Status.CLOSED:
        raise Conflict("This consumer account is closed.", code="account_closed")
    if not policy_for(account.utility).pay_for_others_enabled:
        raise Conflict(
            "This utility takes top-ups only from the account's own users.",
            code="pay_for_others_unavailable",
        )
    return account


def payer_topup_get(*, user: User, topup_id: object):
    """A top-up the user paid, on whatever account: its payer alone sees it here."""
    topup = TopUp.objects.select_related("account__utility").filter(pk=topup_id, user=user).first()
    if topup is None:
        raise NotFound("You have no such top-up.", code="topup_not_found")
    return topup
