"""The ledger: the one way money moves on an account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import ConsumerAccount, User
from billing.energy_days import OPEN_FIELDS, open_entry
from billing.models import Balance, LedgerEntry
from core.money import minor_unit_exponent


@dataclass(frozen=True)
class Posting:
    entry: LedgerEntry
    created: bool
    balance_before: Decimal


def ledger_post(
    *,
    account: ConsumerAccount,
    kind: str,
    amount: Decimal,
    key: str,
    description: str,
    created_by: User | None = None,
    reason: str = "",
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    kwh: Decimal | None = None,
    rate: Decimal | None = None,
    meta: dict | None = None,
    debt_change: Decimal = Decimal(0),
) -> Posting:
    """Append one entry to an account's ledger, exactly once per `key`.

    1. Lock the account's Balance row: concurrent postings (a top-up while readings are charged)
       queue here, so none computes its running balance from a stale sum.
    2. If an entry with this key exists, return it unchanged: retries, replays and at-least-once
       task delivery post nothing twice.
    3. Insert the entry with its running balance and move the Balance row with it (and the debt
       still to recover, when the entry repays or creates arrears).
    """
    utility = account.utility
    exponent = minor_unit_exponent(utility.currency_minor_unit)
    if amount != amount.quantize(exponent):
        raise ValueError(f"{amount} has more decimals than {utility.currency} allows")
    with transaction.atomic():
        Balance.objects.get_or_create(account=account)
        balance = Balance.objects.select_for_update().get(account=account)
        existing = LedgerEntry.objects.filter(key=key).first()
        if existing is not None:
            return Posting(
                entry=existing,
                created=False,
                balance_before=existing.balance_after - existing.amount,
            )
        now = timezone.now()
        # The energy held for the open day is posted first: every entry is written with nothing
        # held, so its running balance is the ledger's sum and the consumer's balance at once.
        held = open_entry(balance, utility)
        if held is not None:
            held.save()
        before = balance.amount
        entry = LedgerEntry.objects.create(
            account=account,
            kind=kind,
            amount=amount,
            balance_after=before + amount,
            currency=utility.currency,
            key=key,
            description=description[:300],
            created_at=now,
            period_start=period_start,
            period_end=period_end,
            kwh=kwh,
            rate=rate,
            created_by=created_by,
            reason=reason,
            meta=meta or {},
        )
        balance.amount = before + amount
        balance.debt = max(Decimal(0), balance.debt + debt_change)
        balance.updated_at = now
        balance.save(update_fields=["debt", *OPEN_FIELDS])
    return Posting(entry=entry, created=True, balance_before=before)
