"""Charging prepaid accounts from their meters' readings.

The unit of work is one meter's UTC day (a MeterDay row). ChargedDay keeps a copy of the readings
as they were last charged; charging again prices only the difference:
- a slot absent then and present now is energy charged for the first time (ENERGY_CHARGE);
- a slot present then whose value changed is a correction (ENERGY_ADJUSTMENT, a debit or a refund);
- an unchanged slot costs nothing, so a task delivered twice charges nothing twice.
Costs accumulate exactly in ChargeMonth per account and local month; what is posted is the rounded
running total minus what was posted before, so rounding to fils never drifts, and progressive slabs
price the month's running total whatever order the readings arrive in.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount
from billing.ledger import Posting, ledger_post
from billing.models import Balance, ChargeCursor, ChargedDay, ChargeMonth, LedgerEntry, Tariff
from billing.tariffs import WH_PER_KWH, Pricing, tariff_for
from core.errors import DomainError
from core.money import money_quantize
from meters.models import Meter, MeterAssignment, MeterDay
from meters.storage import (
    EMPTY_QUALITY,
    EMPTY_VALUES,
    INTERVAL,
    PRESENT,
    slot_start,
    values_pack,
    values_unpack,
)

logger = logging.getLogger(__name__)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# A MeterDay written by a transaction that committed late can carry an updated_at slightly older
# than rows already seen; the pass re-reads this far behind its cursor (re-reading is harmless).
CURSOR_OVERLAP = timedelta(minutes=10)
PASS_LIMIT = 2000


def _holders(meter_id: int, day: date) -> list[MeterAssignment]:
    """The tenancies of the meter that touch this UTC day, oldest first."""
    day_start = datetime.combine(day, datetime.min.time(), UTC)
    return list(
        MeterAssignment.objects.filter(meter_id=meter_id, start__lt=day_start + timedelta(days=1))
        .filter(Q(end__isnull=True) | Q(end__gt=day_start))
        .select_related("account__utility")
        .order_by("start")
    )


def _holder_at(holders: list[MeterAssignment], moment: datetime) -> MeterAssignment | None:
    for holder in holders:
        if holder.start <= moment and (holder.end is None or moment < holder.end):
            return holder
    return None


def meter_day_charge(*, meter_id: int, day: date, pricings: dict | None = None) -> list[Posting]:
    """Charge the difference between a prepaid meter's day as it is and as it was charged.

    1. Find the accounts that held the meter during the day: each interval is charged to the
       account that held the meter when it began (money follows the interval's time, so a late
       correction for a day before a move-out goes to the old account, never the new tenant).
    2. Lock those accounts' Balance rows (ascending ids), then the day's ChargedDay row (created
       empty on first use): two passes over the same day queue here rather than both charging
       the same new intervals.
    3. Compare slot by slot with the current readings; group new and corrected energy by account
       and local month (a UTC day can straddle two).
    4. Price it (flat, time of use, or the month's slabs), post charge and adjustment entries
       keyed by meter, day, version, account and month, plus the fixed daily charge of each local
       day that now has readings, then store the new copy. An interval no account held (a vacant
       meter) is left out of the copy, so a move-in dated back over it still charges it.
    `pricings` memoises tariffs for one pass (never longer: a tariff saved between passes counts).
    """
    pricings = {} if pricings is None else pricings

    def price(on: date) -> Pricing:
        key = (meter.utility_id, on)
        if key not in pricings:
            pricings[key] = tariff_for(utility=utility, payment_mode="prepaid", on=on)
        return pricings[key]

    meter = Meter.objects.select_related("utility").get(pk=meter_id)
    holders = _holders(meter_id, day)
    if meter.payment_mode != Meter.PaymentMode.PREPAID or not holders:
        return []
    utility, zone = meter.utility, meter.utility.zone
    postings: list[Posting] = []
    with transaction.atomic():
        # Lock order for every money movement of an account: its Balance row first (several in
        # ascending id). A top-up and a charge taking their locks in different orders could deadlock.
        account_ids = sorted({h.account_id for h in holders})
        for account_id in account_ids:
            Balance.objects.get_or_create(account_id=account_id)
        list(Balance.objects.select_for_update().filter(account_id__in=account_ids).order_by("pk"))
        ChargedDay.objects.get_or_create(
            meter_id=meter_id,
            day=day,
            defaults={"values": EMPTY_VALUES, "quality": EMPTY_QUALITY, "charged_at": EPOCH},
        )
        state = ChargedDay.objects.select_for_update().get(pk=(meter_id, day))
        row = (
            MeterDay.objects.filter(pk=(meter_id, day))
            .values_list("values", "quality", "updated_at")
            .first()
        )
        if row is None or row[2] <= state.charged_at:
            return []
        new_values, new_quality = values_unpack(bytes(row[0])), bytes(row[1])
        old_values, old_quality = values_unpack(bytes(state.values)), bytearray(state.quality)
        copy_values = values_unpack(bytes(state.values))

        # (account, month) → {"new": [(local, wh)], "changed": [(local, delta_wh)]}
        months: dict[tuple[int, date], dict[str, list]] = defaultdict(
            lambda: {"new": [], "changed": []}
        )
        local_days: set[tuple[int, date]] = set()
        accounts = {h.account_id: h.account for h in holders}
        for slot in range(96):
            moment = slot_start(day, slot)
            holder = _holder_at(holders, moment)
            if holder is None:  # nobody held the meter: keep the slot uncharged in the copy
                continue
            was, now_present = old_quality[slot] in PRESENT, new_quality[slot] in PRESENT
            copy_values[slot], old_quality[slot] = new_values[slot], new_quality[slot]
            before = old_values[slot] if was else 0
            after = new_values[slot] if now_present else 0
            if not was and not now_present:
                continue
            local = moment.astimezone(zone)
            key = (holder.account_id, local.date().replace(day=1))
            if not was:
                months[key]["new"].append((local, after))
                local_days.add((holder.account_id, local.date()))
            elif after != before:
                months[key]["changed"].append((local, after - before))

        for (account_id, month), work in sorted(months.items()):
            if not work["new"] and not work["changed"]:
                continue
            postings += _post_month(
                meter, accounts[account_id], month, price(month), work, day, state.version + 1
            )
        for account_id, local_day in sorted(local_days):
            pricing = price(local_day)
            fixed = pricing.tariff.fixed_daily_charge
            if fixed:
                start = datetime.combine(local_day, datetime.min.time(), zone)
                postings.append(
                    ledger_post(
                        account=accounts[account_id],
                        kind=LedgerEntry.Kind.FIXED_CHARGE,
                        amount=-fixed,
                        key=f"fixed:{account_id}:{local_day.isoformat()}",
                        description=f"Fixed charge for {local_day:%d %b %Y}",
                        period_start=start,
                        period_end=start + timedelta(days=1),
                        meta={"tariff": pricing.tariff.pk},
                    )
                )
        state.values, state.quality = values_pack(copy_values), bytes(old_quality)
        state.version += 1
        state.charged_at = row[2]
        state.save()
    return postings


def _post_month(
    meter: Meter,
    account: ConsumerAccount,
    month: date,
    pricing: Pricing,
    work: dict,
    day: date,
    version: int,
) -> list[Posting]:
    minor = meter.utility.currency_minor_unit
    closed = account.status == ConsumerAccount.Status.CLOSED
    ChargeMonth.objects.get_or_create(account=account, month=month)
    state = ChargeMonth.objects.select_for_update().get(account=account, month=month)
    new_wh = sum(wh for _, wh in work["new"])
    changed_wh = sum(delta for _, delta in work["changed"])
    if pricing.tariff.kind == Tariff.Kind.PROGRESSIVE:
        base = Decimal(state.wh) / WH_PER_KWH
        after_new = base + Decimal(new_wh) / WH_PER_KWH
        after_all = after_new + Decimal(changed_wh) / WH_PER_KWH
        new_cost = pricing.month_cost(after_new) - pricing.month_cost(base)
        changed_cost = pricing.month_cost(after_all) - pricing.month_cost(after_new)
    else:
        new_cost = (
            sum((Decimal(wh) * pricing.rate_at(t.time()) for t, wh in work["new"]), Decimal(0))
            / WH_PER_KWH
        )
        changed_cost = (
            sum((Decimal(d) * pricing.rate_at(t.time()) for t, d in work["changed"]), Decimal(0))
            / WH_PER_KWH
        )
    postings = []
    moments = [t for t, _ in work["new"] + work["changed"]]
    period_start, period_end = min(moments), max(moments) + INTERVAL
    for kind, wh, cost, suffix in (
        (LedgerEntry.Kind.ENERGY_CHARGE, new_wh, new_cost, "c"),
        (LedgerEntry.Kind.ENERGY_ADJUSTMENT, changed_wh, changed_cost, "a"),
    ):
        if not wh and not cost:
            continue
        state.exact_cost += cost
        state.wh += wh
        target = money_quantize(state.exact_cost, minor_unit=minor)
        amount = target - state.posted
        state.posted = target
        if not amount:
            continue
        kwh = Decimal(wh) / WH_PER_KWH
        label = "Energy" if kind == LedgerEntry.Kind.ENERGY_CHARGE else "Correction of energy"
        if closed:
            # Readings for the tenancy that arrive after the move-out adjust its final statement.
            kind = LedgerEntry.Kind.ENERGY_ADJUSTMENT
            label = f"After the final statement: {label.lower()}"
        postings.append(
            ledger_post(
                account=account,
                kind=kind,
                amount=-amount,
                key=f"energy:{meter.pk}:{day.isoformat()}:{version}:{account.pk}:{month:%Y-%m}:{suffix}",
                description=f"{label}, {kwh.normalize():f} kWh, meter {meter.serial}",
                period_start=period_start,
                period_end=period_end,
                kwh=kwh,
                rate=(cost / kwh).quantize(Decimal("0.000001")) if kwh else None,
                meta={"tariff": pricing.tariff.pk, "meter": meter.pk, "utc_day": day.isoformat()},
            )
        )
    state.save()
    return postings


def _cursor_name(shard: int, shards: int) -> str:
    return f"energy:{shard}/{shards}"


def charges_pending(
    *, limit: int, shard: int = 0, shards: int = 1
) -> list[tuple[int, date, datetime]]:
    """Prepaid meter-days whose readings changed since they were charged, oldest change first.
    Shards split the meters (by id modulo `shards`) so several workers charge in parallel, each
    with its own cursor."""
    cursor_row = ChargeCursor.objects.filter(name=_cursor_name(shard, shards)).first()
    since = (cursor_row.position if cursor_row else EPOCH) - CURSOR_OVERLAP
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT md.meter_id, md.day, md.updated_at FROM meters_meterday md "
            "JOIN meters_meter m ON m.id = md.meter_id "
            "LEFT JOIN billing_chargedday cd ON cd.meter_id = md.meter_id AND cd.day = md.day "
            "WHERE md.updated_at >= %s AND m.payment_mode = 'prepaid' "
            "AND EXISTS (SELECT 1 FROM meters_meterassignment a WHERE a.meter_id = md.meter_id) "
            "AND (cd.meter_id IS NULL OR (md.updated_at > cd.charged_at "
            "AND (cd.blocked_at IS NULL OR md.updated_at > cd.blocked_at))) AND md.meter_id %% %s = %s "
            "ORDER BY md.updated_at LIMIT %s",
            [since, shards, shard, limit],
        )
        return [
            (meter_id, day if isinstance(day, date) else date.fromisoformat(day), updated_at)
            for meter_id, day, updated_at in cursor.fetchall()
        ]


def _aware(value: datetime | str) -> datetime:
    """A raw query's timestamp: PostgreSQL gives an aware datetime, SQLite naive UTC text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def charges_rewind() -> None:
    """After a tariff is added or changed: days set aside for want of a tariff are tried again,
    from the start. Charged days are unchanged, so nothing is charged twice."""
    ChargedDay.objects.filter(blocked_at__isnull=False).update(blocked_at=None)
    ChargeCursor.objects.all().delete()


def charges_run(
    *, limit: int = PASS_LIMIT, shard: int = 0, shards: int = 1
) -> tuple[int, set[int]]:
    """One charging pass over one shard. Returns how many meter-days were charged and the accounts touched."""
    started = timezone.now()
    pending = charges_pending(limit=limit, shard=shard, shards=shards)
    accounts: set[int] = set()
    pricings: dict = {}
    for meter_id, day, updated_at in pending:
        try:
            for posting in meter_day_charge(meter_id=meter_id, day=day, pricings=pricings):
                accounts.add(posting.entry.account_id)
        except DomainError as exc:
            # No tariff yet: set the day aside until its readings change or a tariff is saved.
            logger.warning("meter %s day %s not charged: %s", meter_id, day, exc.message)
            ChargedDay.objects.get_or_create(
                meter_id=meter_id,
                day=day,
                defaults={"values": EMPTY_VALUES, "quality": EMPTY_QUALITY, "charged_at": EPOCH},
            )
            ChargedDay.objects.filter(pk=(meter_id, day)).update(blocked_at=_aware(updated_at))
    # Everything changed before this pass began has been seen, or, when the pass was full, everything
    # up to its newest row. Days that could not be charged (no tariff yet) are passed over then;
    # saving a tariff in the admin rewinds the cursors so that they are charged.
    position = started if len(pending) < limit else _aware(pending[-1][2])
    ChargeCursor.objects.update_or_create(
        name=_cursor_name(shard, shards), defaults={"position": position}
    )
    return len(pending), accounts


def charges_release(*, meter_id: int, account: ConsumerAccount, after: datetime) -> list[Posting]:
    """Give back what `account` was charged for the meter's intervals from `after` on (a move-out
    dated before readings already charged): the energy is refunded to it, the slots are cleared
    from the charged copy, and the days are marked for charging again, to the next holder.
    Runs in the caller's transaction, with the account's Balance row locked first."""
    meter = Meter.objects.select_related("utility").get(pk=meter_id)
    zone = meter.utility.zone
    postings: list[Posting] = []
    Balance.objects.select_for_update().get(account=account)
    states = ChargedDay.objects.select_for_update().filter(
        meter_id=meter_id, day__gte=after.astimezone(UTC).date()
    )
    for state in states.order_by("day"):
        values, quality = values_unpack(bytes(state.values)), bytearray(state.quality)
        months: dict[date, dict[str, list]] = defaultdict(lambda: {"new": [], "changed": []})
        for slot in range(96):
            moment = slot_start(state.day, slot)
            if moment < after or quality[slot] not in PRESENT:
                continue
            local = moment.astimezone(zone)
            months[local.date().replace(day=1)]["changed"].append((local, -values[slot]))
            values[slot], quality[slot] = 0, 0
        if not months:
            continue
        for month, work in sorted(months.items()):
            pricing = tariff_for(utility=meter.utility, payment_mode="prepaid", on=month)
            postings += _post_month(
                meter, account, month, pricing, work, state.day, state.version + 1
            )
        state.values, state.quality = values_pack(values), bytes(quality)
        state.version += 1
        state.charged_at = (
            EPOCH  # charge the day again: its cleared slots belong to the next holder
        )
        state.save()
    return postings
