"""The open energy day: one ledger entry per account per local day, however often readings come.

Charging prices every push as it arrives and moves the Balance at once, so the balance a consumer
sees is exact at every moment. But the energy of the newest local day an account was charged for
is held on its Balance row (`open_day`, `open_amount`, `open_wh`) instead of becoming a ledger
entry per push. The day is posted as one ENERGY_CHARGE entry:
- when charging reaches a later local day for the account (`hold`);
- by the hourly close, once the day is over in the utility's zone (`energy_days_close`);
- at a move-out or a closing, before the final statement (`energy_days_post`);
- before any other entry of the account is written (`open_entry`, from billing.ledger and
  charging): every entry is written with nothing held, so its running balance is both the
  ledger's sum and the balance the consumer had.
Energy for a day before the open one (late readings), corrections, and a closed account's readings
are posted as entries at once, as before. The ledger plus the open amounts is the balance:
`billing.selectors.ledger_check` checks exactly that.

The close and a move end the open day (`open_day` back to null). Readings for that day arriving
later open it again and are posted as a further entry: each posting's key carries `open_seq`,
which every posting advances. A push updates none of the columns the balance's indexes name, so
PostgreSQL can rewrite its row in place (a HOT update, billing/migrations/0022_hot_updates.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Utility
from billing.models import Balance, LedgerEntry
from billing.tariffs import WH_PER_KWH
from core.timebuckets import local_midnight

CLOSE_CHUNK = 5000
# A day is closed this long after it ends: the last quarter-hours of the day arrive after midnight,
# and charging posts the day itself when the next day's first push comes; the close is for the
# accounts whose readings stopped.
CLOSE_GRACE = timedelta(hours=2)


def hold(balance, *, local_day, amount: Decimal, wh: int, utility: Utility, entries: list) -> bool:
    """Add new energy's charge (`amount`, negative) for `local_day` to the account's open day,
    moving the balance with it. When the day is later than the open one, the open one is posted
    first (into `entries`). False, with nothing done, for a day before the open one: the caller
    posts that as an entry of its own."""
    if balance.open_day is not None and local_day < balance.open_day:
        return False
    if balance.open_day is not None and local_day > balance.open_day:
        posted = open_entry(balance, utility)
        if posted is not None:
            entries.append(posted)
    balance.open_day = local_day
    balance.open_amount += amount
    balance.open_wh += wh
    balance.amount += amount
    return True


def open_entry(balance, utility: Utility) -> LedgerEntry | None:
    """The open day's charge as one ledger entry, or None when it holds no money. The balance does
    not move: the charge is in it already. The day stays open, at zero."""
    amount, wh, day = balance.open_amount, balance.open_wh, balance.open_day
    balance.open_amount, balance.open_wh = Decimal(0), 0
    if not amount:
        return None
    seq = balance.open_seq
    balance.open_seq += 1
    kwh = Decimal(wh) / WH_PER_KWH
    zone = utility.zone
    return LedgerEntry(
        account_id=balance.account_id,
        kind=LedgerEntry.Kind.ENERGY_CHARGE,
        amount=amount,
        balance_after=balance.amount,
        currency=utility.currency,
        key=f"energy-day:{balance.account_id}:{day.isoformat()}:{seq}",
        description=f"Energy on {day:%d %b %Y}, {kwh.normalize():f} kWh",
        created_at=timezone.now(),
        period_start=local_midnight(day, zone),
        period_end=local_midnight(day + timedelta(days=1), zone),
        kwh=kwh,
        rate=(-amount / kwh).quantize(Decimal("0.000001")) if kwh else None,
        reason="",
        meta={"held": True},
    )


OPEN_FIELDS = ["amount", "updated_at", "open_day", "open_amount", "open_wh", "open_seq"]


def energy_days_post(*, account_ids: list[int], before=None) -> int:
    """Post and end the open days of these accounts (those before local day `before` only, when
    given), in the caller's transaction or one of its own. Returns how many days were ended."""
    return _post_held(account_ids, before=before, end=True)[0]


def energy_days_flush(*, account_id: int) -> bool:
    """Post the account's held energy as an entry now, keeping its day open (a disconnection's
    check and send: billing.relay). True when an entry was written."""
    return _post_held([account_id], before=None, end=False)[1] > 0


def _post_held(account_ids: list[int], *, before, end: bool) -> tuple[int, int]:
    """Lock the balances, post what each holds for an open day (before local day `before` only,
    when given) and, with `end`, end the day. Returns (days ended, entries written)."""
    from billing.charging import _insert_entries, _save, balances_lock

    if not account_ids:
        return 0, 0
    with transaction.atomic():
        balances = balances_lock(account_ids=sorted(set(account_ids)))
        utilities = _utilities(list(balances))
        entries, moved = [], []
        for account_id, balance in balances.items():
            if balance.open_day is None:
                continue
            if before is not None and balance.open_day >= before:
                continue
            entry = open_entry(balance, utilities[account_id])
            if entry is not None:
                entries.append(entry)
            elif not end:
                continue
            if end:
                balance.open_day = None
            balance.updated_at = timezone.now()
            moved.append(balance)
        _insert_entries(entries)
        _save(Balance, moved, OPEN_FIELDS)
    return (len(moved) if end else 0), len(entries)


def _utilities(account_ids: list[int]) -> dict[int, Utility]:
    from accounts.models import ConsumerAccount

    pairs = dict(
        ConsumerAccount.objects.filter(pk__anyof=account_ids).values_list("pk", "utility_id")
    )
    utilities = Utility.objects.in_bulk(set(pairs.values()))
    return {account_id: utilities[utility_id] for account_id, utility_id in pairs.items()}


def energy_days_close(*, now: datetime | None = None, chunk: int = CLOSE_CHUNK) -> int:
    """Post and end every open day that ended CLOSE_GRACE ago or more in its utility's zone: per
    utility, the balances open on such a day, read from the partial index `balance_open_day` in
    chunks of `chunk` accounts, each chunk its own transaction. Returns how many were ended."""
    now = now or timezone.now()
    posted = 0
    for utility in Utility.objects.all():
        today = (now - CLOSE_GRACE).astimezone(utility.zone).date()
        while True:
            # An ended day leaves the partial index, so each chunk is read from its start.
            ids = _stale(utility_id=utility.pk, today=today, chunk=chunk)
            done = energy_days_post(account_ids=ids, before=today) if ids else 0
            posted += done
            if len(ids) < chunk or not done:
                break
    return posted


def _stale(*, utility_id: int, today, chunk: int) -> list[int]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT b.account_id FROM billing_balance b "
                "JOIN accounts_consumeraccount a ON a.id = b.account_id "
                "WHERE b.open_day IS NOT NULL AND b.open_day < %s AND a.utility_id = %s "
                "ORDER BY b.open_day, b.account_id LIMIT %s",
                [today, utility_id, chunk],
            )
            return [account_id for (account_id,) in cursor.fetchall()]
    return list(
        Balance.objects.filter(open_day__lt=today, account__utility_id=utility_id)
        .order_by("open_day", "account_id")
        .values_list("account_id", flat=True)[:chunk]
    )
