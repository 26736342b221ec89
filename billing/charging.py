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
from array import array
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing.energy_days import OPEN_FIELDS, hold, open_entry
from billing.models import Balance, ChargeCursor, ChargedDay, ChargeMonth, LedgerEntry, Tariff
from billing.tariffs import WH_PER_KWH, Pricing, tariff_for
from core.errors import DomainError
from core.money import money_quantize
from core.timebuckets import local_midnight
from meters.models import Meter, MeterAssignment, MeterDay
from meters.storage import (
    EMPTY_QUALITY,
    EMPTY_VALUES,
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
# How often a shard looks back over that overlap (a scan of everything changed in it). On
# PostgreSQL the pass reads only below the horizon of open transactions (_horizon), so nothing
# should be behind the cursor: the look back is a safety net there, taken less often.
RECHECK_EVERY = timedelta(minutes=5)
# As often as the overlap is long, so the looks behind tile the timeline.
RECHECK_EVERY_BELOW_HORIZON = CURSOR_OVERLAP
PASS_LIMIT = 2000


@dataclass
class _Month:
    """What one pass adds to an (account, local day) of a month: new energy and corrections, priced."""

    new_wh: int = 0
    new_nano: int = 0  # cost in billionths of the currency (flat and time of use)
    changed_wh: int = 0
    changed_nano: int = 0

    def add(self, wh: int, nano: int, *, new: bool) -> None:
        if new:
            self.new_wh += wh
            self.new_nano += nano
        else:
            self.changed_wh += wh
            self.changed_nano += nano


class _Prices:
    """Tariffs for one pass, looked up once per utility and day (never longer: a tariff saved
    between passes counts), with integer rates: millionths of the currency per kWh, so that
    Wh × rate is billionths exactly."""

    def __init__(self) -> None:
        self._pricing: dict[tuple[int, date], Pricing | DomainError] = {}
        self._rates: dict[tuple[int, int, date], list[int]] = {}

    def pricing(self, utility: Utility, on: date) -> Pricing:
        key = (utility.pk, on)
        if key not in self._pricing:
            try:
                self._pricing[key] = tariff_for(utility=utility, payment_mode="prepaid", on=on)
            except DomainError as exc:
                self._pricing[key] = exc
        found = self._pricing[key]
        if isinstance(found, DomainError):
            raise found
        return found

    def slot_rates(self, pricing: Pricing, calendar: _Calendar) -> list[int]:
        """The rate of each slot of a UTC day under a flat or time-of-use tariff."""
        key = (pricing.tariff.pk, calendar.zone_key, calendar.day)
        if key not in self._rates:
            self._rates[key] = [
                int(pricing.rate_at(local.time()) * MICRO) for local in calendar.locals
            ]
        return self._rates[key]


@dataclass(frozen=True)
class _Calendar:
    """The local time, day and month of each quarter-hour of a UTC day in one zone (a DST day
    maps its intervals one by one)."""

    day: date
    zone_key: str
    locals: list[datetime]
    months: list[date]
    # Runs of slots sharing a local day: (local day, first slot, end slot); at most two or three.
    day_runs: list[tuple[date, int, int]]

    @classmethod
    def of(cls, day: date, utility: Utility, cache: dict) -> _Calendar:
        key = (day, utility.timezone)
        if key not in cache:
            zone = utility.zone
            locals_ = [slot_start(day, slot).astimezone(zone) for slot in range(96)]
            runs: list[tuple[date, int, int]] = []
            for slot, local in enumerate(locals_):
                if runs and runs[-1][0] == local.date():
                    runs[-1] = (runs[-1][0], runs[-1][1], slot + 1)
                else:
                    runs.append((local.date(), slot, slot + 1))
            cache[key] = cls(
                day, utility.timezone, locals_, [t.date().replace(day=1) for t in locals_], runs
            )
        return cache[key]


MICRO = 1_000_000
NANO = Decimal(1_000_000_000)


def _slab_nano(pricing: Pricing, wh: int) -> int:
    """A month's total under progressive slabs, in billionths: each Wh at its slab's rate."""
    cost = 0
    slabs = pricing.slabs
    for index, (start, rate) in enumerate(slabs):
        start_wh = int(start) * 1000
        if wh <= start_wh:
            break
        end_wh = int(slabs[index + 1][0]) * 1000 if index + 1 < len(slabs) else None
        cost += ((wh if end_wh is None else min(wh, end_wh)) - start_wh) * int(rate * MICRO)
    return cost


def charges_apply(*, keys: list[tuple[int, date]], strict: bool = False) -> tuple[int, set[int]]:
    """Charge a batch of prepaid meter-days in a few set-wide statements.

    1. Read the batch's meters and the tenancies that touch its days: each interval is charged
       to the account that held the meter when it began (money follows the interval's time, so
       a correction for a day before a move-out goes to the old account, never the new tenant).
    2. Lock the accounts' Balance rows in ascending id (the lock order of every money movement:
       a top-up takes the same lock first), then the days' ChargedDay rows (made empty on first
       use). Under those locks re-read the readings: a day a concurrent pass, or the same task
       delivered twice, has charged since is unchanged now and costs nothing.
    3. Compare each day slot by slot with its charged copy: a slot absent then and present now is
       new energy (ENERGY_CHARGE), a changed one a correction (ENERGY_ADJUSTMENT, debit or refund).
       Group by account and local month; price in integers (flat and time of use per slot,
       progressive slabs on the month's running total in ChargeMonth).
    4. Post the rounded running total minus what was posted (so rounding never drifts), plus the
       fixed charge of each local day that now has readings, once; move the balances; store the
       new copies. An interval no account held is left out of the copy (a move-in dated back over
       it charges it later). A day without a tariff is set aside (`strict`: refused).
    Returns how many meter-days were charged and the accounts whose balance moved.
    """
    keys = sorted(set(keys))
    if not keys:
        return 0, set()
    meter_ids = sorted({meter_id for meter_id, _ in keys})
    days = sorted({day for _, day in keys})
    meters = _prepaid_meters(meter_ids)
    for _attempt in range(3):
        holders = _tenancies(list(meters), days)
        try:
            return _apply(keys, meters, days, holders, strict=strict)
        except _HoldersChanged:
            # A move committed between reading the tenancies and locking the days: read again.
            continue
    raise RuntimeError("the meters' tenancies kept changing under a charging pass")


class _HoldersChanged(Exception):
    pass


@dataclass(frozen=True)
class _MeterInfo:
    pk: int
    serial: str
    utility: Utility


def _prepaid_meters(meter_ids: list[int]) -> dict[int, _MeterInfo]:
    """The batch's prepaid meters, with their utilities loaded once each."""
    if connection.vendor == "postgresql":
        rows = _query_arrays(
            "SELECT id, serial, utility_id FROM meters_meter "
            "WHERE id = ANY(%s::bigint[]) AND payment_mode = 'prepaid'",
            [meter_ids],
        )
    else:
        rows = Meter.objects.filter(
            pk__in=meter_ids, payment_mode=Meter.PaymentMode.PREPAID
        ).values_list("pk", "serial", "utility_id")
    rows = list(rows)
    utilities = Utility.objects.in_bulk({utility_id for _, _, utility_id in rows})
    return {pk: _MeterInfo(pk, serial, utilities[u]) for pk, serial, u in rows}


def _closed_accounts(account_ids: list[int]) -> set[int]:
    """Of these accounts, the closed ones (their late readings adjust a final statement)."""
    if connection.vendor == "postgresql":
        rows = _query_arrays(
            "SELECT id FROM accounts_consumeraccount WHERE id = ANY(%s::bigint[]) "
            "AND status = 'closed'",
            [account_ids],
        )
        return {pk for (pk,) in rows}
    return set(
        ConsumerAccount.objects.filter(
            pk__in=account_ids, status=ConsumerAccount.Status.CLOSED
        ).values_list("pk", flat=True)
    )


def _tenancies(meter_ids: list[int], days: list[date]) -> dict[int, list]:
    first = datetime.combine(days[0], datetime.min.time(), UTC)
    last = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC)
    holders: dict[int, list[tuple[int, datetime, datetime | None]]] = defaultdict(list)
    if connection.vendor == "postgresql":
        rows = _query_arrays(
            'SELECT meter_id, account_id, start, "end" FROM meters_meterassignment '
            'WHERE meter_id = ANY(%s::bigint[]) AND start < %s AND ("end" IS NULL OR "end" > %s) '
            "ORDER BY start, id",
            [meter_ids, last, first],
        )
    else:
        rows = (
            MeterAssignment.objects.filter(meter_id__in=meter_ids, start__lt=last)
            .filter(Q(end__isnull=True) | Q(end__gt=first))
            .order_by("start", "pk")
            .values_list("meter_id", "account_id", "start", "end")
        )
    for meter_id, account_id, start, end in rows:
        holders[meter_id].append((account_id, start, end))
    return holders


def _apply(keys, meters, days, holders, *, strict: bool) -> tuple[int, set[int]]:
    account_ids = sorted({a for tenancies in holders.values() for a, _, _ in tenancies})
    charged, touched = 0, set()
    with transaction.atomic():
        balances = balances_lock(account_ids=account_ids)
        states = _lock_days([k for k in keys if k[0] in meters])
        rows = _read_days(list(states))
        # Under the locks, the tenancies must be those priced: a move-in or move-out that
        # committed since they were read would otherwise see its days marked charged unpriced.
        if _tenancies(list(meters), days) != holders:
            raise _HoldersChanged
        prices, calendars = _Prices(), {}
        months: dict[tuple[int, date], dict[tuple[tuple[int, date], date], _Month]] = defaultdict(
            dict
        )
        fixed: dict[tuple[int, date], tuple[Pricing, Utility]] = {}
        done: list[ChargedDay] = []
        blocked: list[ChargedDay] = []
        for key in keys:
            meter, state, row = meters.get(key[0]), states.get(key), rows.get(key)
            if meter is None or state is None or row is None or row[2] <= state.charged_at:
                continue
            try:
                work = _day_work(meter, key[1], row, state, holders[key[0]], prices, calendars)
            except DomainError as exc:
                if strict:
                    raise
                # No tariff yet: set aside until the readings change or a tariff is saved.
                logger.warning("meter %s day %s not charged: %s", key[0], key[1], exc.message)
                state.blocked_at = row[2]
                blocked.append(state)
                continue
            day_months, day_fixed = work
            _by_month(months, day_months, key)
            fixed.update(day_fixed)
            state.version += 1
            state.charged_at = row[2]
            done.append(state)
            charged += 1
        closed = _closed_accounts(account_ids)
        entries = _post(
            meters,
            months,
            fixed,
            balances,
            prices,
            versions={(s.meter_id, s.day): s.version for s in done},
            closed=closed,
            held=touched,
        )
        for entry in entries:
            touched.add(entry.account_id)
        _insert_entries(entries)
        now = timezone.now()
        moved = [balances[a] for a in sorted(touched)]
        for balance in moved:
            balance.updated_at = now
        _save(Balance, moved, OPEN_FIELDS)
        _save(ChargedDay, done, ["values", "quality", "version", "charged_at"])
        _save(ChargedDay, blocked, ["blocked_at"])
    return charged, touched


def _day_work(meter, day, row, state, tenancies, prices, calendars):
    """One meter-day's difference from its charged copy, grouped by (account, local month), and
    the local days that now have readings (for their fixed charge). Updates the copy in place."""
    utility = meter.utility
    new_values, new_quality = values_unpack(bytes(row[0])), bytes(row[1])
    old_values, old_quality = values_unpack(bytes(state.values)), bytearray(state.quality)
    copy_values = array("i", old_values)
    calendar = _Calendar.of(day, utility, calendars)
    months: dict[tuple[int, date], _Month] = {}
    fixed: dict[tuple[int, date], tuple[Pricing, Utility]] = {}
    single = (
        tenancies[0][0]
        if len(tenancies) == 1
        and tenancies[0][1] <= slot_start(day, 0)
        and (tenancies[0][2] is None or tenancies[0][2] >= slot_start(day, 96))
        else None
    )
    if single is not None and not any(old_quality):
        # The day's first charge under one holder: sums over each local day's run of slots.
        return _first_charge(single, new_values, new_quality, state, calendar, utility, prices)
    # Only the slots that differ from the copy cost anything: a push of one new interval looks
    # at one slot, not 96.
    changed = [
        slot
        for slot in range(96)
        if new_quality[slot] != old_quality[slot] or new_values[slot] != old_values[slot]
    ]
    rates: dict[date, list[int] | None] = {}
    for slot in changed:
        nq, oq = new_quality[slot], old_quality[slot]
        nv, ov = new_values[slot], old_values[slot]
        if single is not None:
            account_id = single
        else:
            moment = slot_start(day, slot)
            account_id = next(
                (
                    a
                    for a, start, end in tenancies
                    if start <= moment and (end is None or moment < end)
                ),
                None,
            )
            if account_id is None:  # nobody held the meter: keep the slot uncharged in the copy
                continue
        copy_values[slot], old_quality[slot] = nv, nq
        was, now_present = oq in PRESENT, nq in PRESENT
        if not was and not now_present:
            continue
        before, after = (ov if was else 0), (nv if now_present else 0)
        if was and after == before:
            continue
        local, month_start = calendar.locals[slot], calendar.months[slot]
        if month_start not in rates:
            pricing = prices.pricing(utility, month_start)
            rates[month_start] = (
                None
                if pricing.tariff.kind == Tariff.Kind.PROGRESSIVE
                else prices.slot_rates(pricing, calendar)
            )
        month_rates = rates[month_start]
        group = (account_id, local.date())
        month = months.get(group)
        if month is None:
            month = months[group] = _Month()
        wh = after if not was else after - before
        month.add(wh, 0 if month_rates is None else wh * month_rates[slot], new=not was)
        if not was:
            fixed_day = local.date()
            if (account_id, fixed_day) not in fixed:
                fixed[(account_id, fixed_day)] = (prices.pricing(utility, fixed_day), utility)
    state.values, state.quality = values_pack(copy_values), bytes(old_quality)
    return months, fixed


def _first_charge(account_id, values, quality, state, calendar, utility, prices):
    """_day_work for a day never charged before and held by one account all day."""
    months: dict[tuple[int, date], _Month] = {}
    fixed: dict[tuple[int, date], tuple[Pricing, Utility]] = {}
    for local_day, first, end in calendar.day_runs:
        present = [slot for slot in range(first, end) if quality[slot] in PRESENT]
        if not present:
            continue
        month_start = local_day.replace(day=1)
        pricing = prices.pricing(utility, month_start)
        wh = sum(values[slot] for slot in present)
        nano = 0
        if pricing.tariff.kind != Tariff.Kind.PROGRESSIVE:
            rates = prices.slot_rates(pricing, calendar)
            nano = sum(values[slot] * rates[slot] for slot in present)
        month = months.setdefault((account_id, local_day), _Month())
        month.add(wh, nano, new=True)
        fixed[(account_id, local_day)] = (prices.pricing(utility, local_day), utility)
    state.values, state.quality = values_pack(values), bytes(quality)
    return months, fixed


def _by_month(months: dict, day_work: dict, key: tuple[int, date]) -> None:
    """File a meter-day's work, grouped by (account, local day), under its (account, local month):
    each ledger entry is one local day's, each running total one month's."""
    for (account_id, local_day), month in day_work.items():
        months[(account_id, local_day.replace(day=1))][(key, local_day)] = month


def _post(
    meters, months, fixed, balances, prices, *, versions, closed, held=None
) -> list[LedgerEntry]:
    """Ledger entries for a pass: per (meter-day, account, month) the charge and the correction,
    as the month's rounded running total minus what it had posted; then the fixed charges not
    posted yet. Each entry carries its account's running balance. New energy of an account's
    open local day is held on its balance instead (billing.energy_days; its id goes in `held`)."""
    groups = sorted(months)
    states = _lock_months(groups)
    entries: list[LedgerEntry] = []
    _post_fixed(fixed, balances, entries)
    changed_states = []
    for group in groups:
        account_id, month_start = group
        state = states[group]
        changed_states.append(state)
        exact = int(state.exact_cost * NANO)
        for ((meter_id, day), local_day), month in sorted(months[group].items()):
            meter = meters[meter_id]
            utility = meter.utility
            pricing = prices.pricing(utility, month_start)
            if pricing.tariff.kind == Tariff.Kind.PROGRESSIVE:
                base = state.wh
                new_nano = _slab_nano(pricing, base + month.new_wh) - _slab_nano(pricing, base)
                changed_nano = _slab_nano(
                    pricing, base + month.new_wh + month.changed_wh
                ) - _slab_nano(pricing, base + month.new_wh)
            else:
                new_nano, changed_nano = month.new_nano, month.changed_nano
            version = versions[(meter_id, day)]
            for kind, wh, nano, suffix in (
                (LedgerEntry.Kind.ENERGY_CHARGE, month.new_wh, new_nano, "c"),
                (LedgerEntry.Kind.ENERGY_ADJUSTMENT, month.changed_wh, changed_nano, "a"),
            ):
                if not wh and not nano:
                    continue
                exact += nano
                state.wh += wh
                target = money_quantize(
                    Decimal(exact) / NANO, minor_unit=utility.currency_minor_unit
                )
                amount = target - state.posted
                state.posted = target
                if (
                    kind == LedgerEntry.Kind.ENERGY_CHARGE
                    and account_id not in closed
                    and held is not None
                    and hold(
                        balances[account_id],
                        local_day=local_day,
                        amount=-amount,
                        wh=wh,
                        utility=utility,
                        entries=entries,
                    )
                ):
                    held.add(account_id)
                    continue
                if not amount:
                    continue
                kwh = Decimal(wh) / WH_PER_KWH
                label = (
                    "Energy" if kind == LedgerEntry.Kind.ENERGY_CHARGE else "Correction of energy"
                )
                if account_id in closed:
                    # Readings for a tenancy that arrive after its move-out adjust its final statement.
                    kind = LedgerEntry.Kind.ENERGY_ADJUSTMENT
                    label = f"After the final statement: {label.lower()}"
                _append(
                    entries,
                    balances[account_id],
                    utility,
                    kind=kind,
                    amount=-amount,
                    key=f"energy:{meter_id}:{day.isoformat()}:{version}:{account_id}:{local_day.isoformat()}:{suffix}",
                    description=f"{label} on {local_day:%d %b %Y}, {kwh.normalize():f} kWh, meter {meter.serial}",
                    # The local day, in the utility's zone, as every statement line.
                    period_start=local_midnight(local_day, utility.zone),
                    period_end=local_midnight(local_day + timedelta(days=1), utility.zone),
                    kwh=kwh,
                    rate=(Decimal(nano) / NANO / kwh).quantize(Decimal("0.000001"))
                    if kwh
                    else None,
                    meta={
                        "tariff": pricing.tariff.pk,
                        "meter": meter_id,
                        "utc_day": day.isoformat(),
                    },
                )
        state.exact_cost = Decimal(exact) / NANO
    _save(ChargeMonth, changed_states, ["wh", "exact_cost", "posted"])
    return entries


def _post_fixed(fixed, balances, entries: list) -> None:
    """The fixed charge of each local day that now has readings, once (its key says so). Posted
    before the pass's energy, so that a new day's first push does not part its held energy."""
    keys = {
        f"fixed:{a}:{d.isoformat()}": (a, d)
        for (a, d), (pricing, _) in fixed.items()
        if pricing.tariff.fixed_daily_charge
    }
    if connection.vendor == "postgresql":
        found = _query_arrays(
            "SELECT key FROM billing_ledgerentry WHERE key = ANY(%s::varchar[])", [list(keys)]
        )
        posted = {key for (key,) in found}
    else:
        posted = set(LedgerEntry.objects.filter(key__in=list(keys)).values_list("key", flat=True))
    for key, (account_id, local_day) in sorted(keys.items()):
        if key in posted:
            continue
        pricing, utility = fixed[(account_id, local_day)]
        start = datetime.combine(local_day, datetime.min.time(), utility.zone)
        _append(
            entries,
            balances[account_id],
            utility,
            kind=LedgerEntry.Kind.FIXED_CHARGE,
            amount=-pricing.tariff.fixed_daily_charge,
            key=key,
            description=f"Fixed charge for {local_day:%d %b %Y}",
            period_start=start,
            period_end=start + timedelta(days=1),
            meta={"tariff": pricing.tariff.pk},
        )


@dataclass
class _Row:
    """A Balance or ChargeMonth row as a pass reads and writes it."""

    pk: object
    account_id: int
    amount: Decimal = Decimal(0)
    updated_at: datetime | None = None
    month: date | None = None
    wh: int = 0
    exact_cost: Decimal = Decimal(0)
    posted: Decimal = Decimal(0)
    open_day: date | None = None
    open_amount: Decimal = Decimal(0)
    open_wh: int = 0
    open_seq: int = 0

    @property
    def id(self) -> object:  # ChargeMonth's primary key column, as _save reads it
        return self.pk


def balances_lock(*, account_ids: list[int]) -> dict[int, Balance | _Row]:
    """The accounts' Balance rows (made where missing), locked in ascending id: the lock order
    of every money movement."""
    if connection.vendor != "postgresql":
        Balance.objects.bulk_create(
            [Balance(account_id=a) for a in account_ids], ignore_conflicts=True
        )
        return {
            b.account_id: b
            for b in Balance.objects.select_for_update()
            .filter(account_id__in=account_ids)
            .order_by("account_id")
        }
    rows = _query_arrays(
        "INSERT INTO billing_balance (account_id, amount, debt, updated_at, open_amount, open_wh, "
        "open_seq) SELECT a, 0, 0, now(), 0, 0, 0 FROM unnest(%s::bigint[]) AS a ON CONFLICT DO NOTHING; "
        "SELECT account_id, amount, open_day, open_amount, open_wh, open_seq FROM billing_balance "
        "WHERE account_id = ANY(%s::bigint[]) ORDER BY account_id FOR UPDATE",
        [account_ids, account_ids],
    )
    return {
        a: _Row(
            pk=a,
            account_id=a,
            amount=amount,
            open_day=day,
            open_amount=open_amount,
            open_wh=wh,
            open_seq=seq,
        )
        for a, amount, day, open_amount, wh, seq in rows
    }


def _lock_months(groups: list[tuple[int, date]]) -> dict[tuple[int, date], ChargeMonth | _Row]:
    """The (account, local month) running totals the pass adds to, made where missing, locked."""
    if connection.vendor != "postgresql":
        ChargeMonth.objects.bulk_create(
            [ChargeMonth(account_id=a, month=m) for a, m in groups], ignore_conflicts=True
        )
        wanted = set(groups)
        return {
            (c.account_id, c.month): c
            for c in ChargeMonth.objects.select_for_update()
            .filter(account_id__in={a for a, _ in groups}, month__in={m for _, m in groups})
            .order_by("account_id", "month")
            if (c.account_id, c.month) in wanted
        }
    accounts, month_starts = [a for a, _ in groups], [m for _, m in groups]
    rows = _query_arrays(
        "INSERT INTO billing_chargemonth (account_id, month, wh, exact_cost, posted) "
        "SELECT a, m, 0, 0, 0 FROM unnest(%s::bigint[], %s::date[]) AS k(a, m) "
        "ON CONFLICT DO NOTHING; "
        "SELECT c.id, c.account_id, c.month, c.wh, c.exact_cost, c.posted "
        "FROM billing_chargemonth c JOIN unnest(%s::bigint[], %s::date[]) AS k(a, m) "
        "ON c.account_id = k.a AND c.month = k.m ORDER BY c.account_id, c.month FOR UPDATE OF c",
        [accounts, month_starts, accounts, month_starts],
    )
    return {
        (a, m): _Row(pk=pk, account_id=a, month=m, wh=wh, exact_cost=exact, posted=posted)
        for pk, a, m, wh, exact, posted in rows
    }


def _server_cursor():
    """A psycopg cursor that binds parameters on the server: whole columns travel as arrays in
    binary, where Django's client-side binding would quote every element as text."""
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _query_arrays(sql: str, params: list) -> list[tuple]:
    """Statements (`;`-separated) bound by the server with whole arrays as parameters; returns
    the last one's rows (none for a statement that returns none)."""
    statements = [part.strip() for part in sql.split("; ") if part.strip()]
    with _server_cursor() as cursor:
        for statement in statements:
            count = statement.count("%s")
            cursor.execute(statement, params[:count])
            params = params[count:]
        return cursor.fetchall() if cursor.description else []


def _lock_days(keys: list[tuple[int, date]]) -> dict[tuple[int, date], ChargedDay]:
    """The batch's ChargedDay rows, made empty where missing, locked in (meter, day) order."""
    if connection.vendor != "postgresql":
        ChargedDay.objects.bulk_create(
            [
                ChargedDay(
                    meter_id=m, day=d, values=EMPTY_VALUES, quality=EMPTY_QUALITY, charged_at=EPOCH
                )
                for m, d in keys
            ],
            ignore_conflicts=True,
        )
        wanted = set(keys)
        return {
            (s.meter_id, s.day): s
            for s in ChargedDay.objects.select_for_update()
            .filter(meter_id__in={m for m, _ in keys}, day__in={d for _, d in keys})
            .order_by("meter_id", "day")
            if (s.meter_id, s.day) in wanted
        }
    # PostgreSQL: keys travel as two arrays (no per-row parameters to bind) and the copies come
    # back in binary, as the readings' own reads do (meters.selectors.meter_series).
    meter_ids, days = [m for m, _ in keys], [d for _, d in keys]
    with _server_cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_chargedday (meter_id, day, values, quality, version, charged_at) "
            "SELECT m, d, %s, %s, 0, %s FROM unnest(%s::bigint[], %s::date[]) AS k(m, d) "
            "ON CONFLICT DO NOTHING",
            [EMPTY_VALUES, EMPTY_QUALITY, EPOCH, meter_ids, days],
        )
        cursor.execute(
            "SELECT c.meter_id, c.day, c.values, c.quality, c.version, c.charged_at, c.blocked_at "
            "FROM billing_chargedday c JOIN unnest(%s::bigint[], %s::date[]) AS k(m, d) "
            "ON c.meter_id = k.m AND c.day = k.d ORDER BY c.meter_id, c.day FOR UPDATE OF c",
            [meter_ids, days],
            binary=True,
        )
        return {
            (m, d): _Copy(m, d, bytes(v), bytes(q), n, c, b)
            for m, d, v, q, n, c, b in cursor.fetchall()
        }


@dataclass
class _Copy:
    """A ChargedDay row as a pass reads and writes it (no model instance for each of thousands)."""

    meter_id: int
    day: date
    values: bytes
    quality: bytes
    version: int
    charged_at: datetime
    blocked_at: datetime | None


def _read_days(keys: list[tuple[int, date]]) -> dict[tuple[int, date], tuple]:
    """The readings of the batch's meter-days: (values, quality, updated_at) by key."""
    if not keys:
        return {}
    if connection.vendor != "postgresql":
        wanted = set(keys)
        return {
            (m, d): (bytes(v), bytes(q), u)
            for m, d, v, q, u in MeterDay.objects.filter(
                meter_id__in={m for m, _ in keys}, day__in={d for _, d in keys}
            ).values_list("meter_id", "day", "values", "quality", "updated_at")
            if (m, d) in wanted
        }
    with _server_cursor() as cursor:
        cursor.execute(
            "SELECT md.meter_id, md.day, md.values, md.quality, md.updated_at "
            "FROM meters_meterday md JOIN unnest(%s::bigint[], %s::date[]) AS k(m, d) "
            "ON md.meter_id = k.m AND md.day = k.d",
            [[m for m, _ in keys], [d for _, d in keys]],
            binary=True,
        )
        return {(m, d): (bytes(v), bytes(q), u) for m, d, v, q, u in cursor.fetchall()}


LEDGER_COLUMNS = [
    "account_id",
    "kind",
    "amount",
    "balance_after",
    "currency",
    "key",
    "description",
    "created_at",
    "period_start",
    "period_end",
    "kwh",
    "rate",
    "reason",
    "meta",
]


def _insert_entries(entries: list[LedgerEntry]) -> None:
    """Append a pass's ledger rows: on PostgreSQL one INSERT from column arrays."""
    if not entries:
        return
    if connection.vendor != "postgresql":
        LedgerEntry.objects.bulk_create(entries, batch_size=1000)
        return
    from psycopg.types.json import Jsonb

    fields = [LedgerEntry._meta.get_field(c.removesuffix("_id")) for c in LEDGER_COLUMNS]
    arrays = [[getattr(e, f.attname) for e in entries] for f in fields]
    arrays[LEDGER_COLUMNS.index("meta")] = [Jsonb(e.meta) for e in entries]
    types = [f.rel_db_type(connection) if f.is_relation else f.db_type(connection) for f in fields]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    selects = ", ".join(f"%s::{t}[]" for t in types)
    _query_arrays(
        f"INSERT INTO billing_ledgerentry ({columns}) SELECT * FROM unnest({selects})",  # noqa: S608
        arrays,
    )


def _append(entries: list, balance, utility: Utility, *, amount: Decimal, **fields) -> None:
    """Append a ledger row for the account, after the energy held for its open day (if any) is
    posted: every entry is written with nothing held, so its running balance is both the sum of
    the ledger so far and the balance the consumer had (billing.energy_days)."""
    held = open_entry(balance, utility)
    if held is not None:
        entries.append(held)
    entries.append(_entry(balance, utility, amount=amount, **fields))


def _entry(balance: Balance, utility: Utility, *, amount: Decimal, **fields) -> LedgerEntry:
    """A ledger row carrying its account's running balance (the Balance row is locked)."""
    balance.amount += amount
    return LedgerEntry(
        account_id=balance.account_id,
        amount=amount,
        balance_after=balance.amount,
        currency=utility.currency,
        created_at=timezone.now(),
        **fields,
    )


def _save(model, rows: list, fields: list[str]) -> None:
    """Write back a pass's changed rows: on PostgreSQL one statement per table, joined to arrays
    of the new values; elsewhere row by row."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for row in rows:
            model.objects.filter(pk=row.pk).update(**{f: getattr(row, f) for f in fields})
        return
    table = model._meta.db_table
    pk_columns = [f.column for f in model._meta.pk_fields]
    columns = [model._meta.get_field(f) for f in fields]
    names = pk_columns + [c.column for c in columns]
    types = [f.rel_db_type(connection) for f in model._meta.pk_fields]
    types += [c.db_type(connection) for c in columns]
    arrays = [[getattr(row, c) for row in rows] for c in pk_columns]
    # The values as the pass holds them (Decimal, datetime, date, int, bytes): psycopg sends each
    # type as it is, without a trip through the fields' own preparation per value.
    arrays += [[getattr(row, c.attname) for row in rows] for c in columns]
    selects = ", ".join(f"unnest(%s::{t}[])" for t in types)
    sets = ", ".join(f'"{c.column}" = v."{c.column}"' for c in columns)
    joins = " AND ".join(f't."{c}" = v."{c}"' for c in pk_columns)
    column_list = ", ".join(f'"{n}"' for n in names)
    _query_arrays(
        f'UPDATE "{table}" t SET {sets} FROM (SELECT {selects}) AS v({column_list}) '  # noqa: S608
        f"WHERE {joins}",
        arrays,
    )


def _cursor_name(shard: int, shards: int) -> str:
    return f"energy:{shard}/{shards}"


_PENDING = (
    "SELECT md.meter_id, md.day, md.updated_at FROM meters_meterday md "
    "JOIN meters_meter m ON m.id = md.meter_id "
    "LEFT JOIN billing_chargedday cd ON cd.meter_id = md.meter_id AND cd.day = md.day "
    "WHERE {window} AND m.payment_mode = 'prepaid' "
    "AND EXISTS (SELECT 1 FROM meters_meterassignment a WHERE a.meter_id = md.meter_id) "
    "AND (cd.meter_id IS NULL OR (md.updated_at > cd.charged_at "
    "AND (cd.blocked_at IS NULL OR md.updated_at > cd.blocked_at))) AND md.meter_id %% %s = %s "
    "ORDER BY md.updated_at, md.meter_id, md.day LIMIT %s"
)


def _pending_rows(window: str, params: list, *, limit: int, shard: int, shards: int) -> list:
    """The first `limit` changes of the window in (updated_at, meter, day) order.

    On PostgreSQL the read must walk the changes index in order (a Merge Append of each
    partition's index, stopping at `limit`). Right after a push the statistics have not seen the
    new change times, so the planner expects a row or two and would rather read every change in
    the window and sort them: at a million meters that is the whole push, on every pass. Sorting
    is switched off for this one statement (SET LOCAL, in a transaction or savepoint of its own)."""
    sql = _PENDING.format(window=window)
    # Moments as the column stores them (SQLite compares text: an aware datetime bound as
    # "…+00:00" would sort after the same moment stored without it).
    params = [
        connection.ops.adapt_datetimefield_value(p) if isinstance(p, datetime) else p
        for p in params
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(sql, [*params, shards, shard, limit])
        rows = cursor.fetchall()
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = on")
    return [
        (meter_id, day if isinstance(day, date) else date.fromisoformat(day), _aware(at))
        for meter_id, day, at in rows
    ]


def _position(cursor_row: ChargeCursor | None) -> tuple[datetime, int | None, date | None]:
    if cursor_row is None:
        return EPOCH, None, None
    return cursor_row.position, cursor_row.meter_id, cursor_row.day


def _against_cursor(cursor_row, op: str) -> tuple[str, list]:
    """A change's place against the cursor: `op` ">" after it, "<=" at or before it. A cursor
    without a key (none yet, or saved before keysets) is a moment only."""
    position, meter_id, day = _position(cursor_row)
    if meter_id is None:
        return ("md.updated_at >= %s" if op == ">" else "md.updated_at < %s"), [position]
    return f"(md.updated_at, md.meter_id, md.day) {op} (%s, %s, %s)", [position, meter_id, day]


def _ahead(cursor_row, *, limit: int, shard: int, shards: int, horizon=None) -> list:
    """The changes after the cursor, in (updated_at, meter, day) order: a keyset read of the
    meterday_changes index that starts where the last pass stopped, whatever its size. With a
    `horizon`, only changes stamped before it."""
    window, params = _against_cursor(cursor_row, ">")
    if horizon is not None:
        window, params = f"{window} AND md.updated_at < %s", [*params, horizon]
    return _pending_rows(window, params, limit=limit, shard=shard, shards=shards)


def _horizon(now: datetime) -> datetime | None:
    """PostgreSQL: the start of the oldest transaction still open on this database, other than
    this one, but no older than CURSOR_OVERLAP. Ingest stamps a row with the start of the
    statement writing it (meters.services: `statement_timestamp()`), which is after its
    transaction began, so every row stamped before the horizon is already committed and visible:
    a pass that reads only those never leaves a row behind its cursor. None elsewhere (SQLite has
    one writer; its pass looks behind instead)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT LEAST(clock_timestamp(), MIN(xact_start)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND xact_start IS NOT NULL"
        )
        (horizon,) = cursor.fetchone()
    return max(horizon or now, now - CURSOR_OVERLAP)


def _behind(cursor_row, *, limit: int, shard: int, shards: int) -> list:
    """Changes stamped up to CURSOR_OVERLAP before the cursor that it passed before they committed
    and that are not charged yet (a transaction open longer than the horizon allows for, or on
    SQLite, a batch stamped when its request began)."""
    if cursor_row is None:
        return []
    window, params = _against_cursor(cursor_row, "<=")
    return _pending_rows(
        f"md.updated_at >= %s AND {window}",
        [cursor_row.position - CURSOR_OVERLAP, *params],
        limit=limit,
        shard=shard,
        shards=shards,
    )


def _recheck_due(cursor_row, now: datetime) -> bool:
    every = RECHECK_EVERY if connection.vendor != "postgresql" else RECHECK_EVERY_BELOW_HORIZON
    return cursor_row is not None and (
        cursor_row.rechecked_at is None or cursor_row.rechecked_at <= now - every
    )


def charges_pending(
    *, limit: int, shard: int = 0, shards: int = 1
) -> list[tuple[int, date, datetime]]:
    """Prepaid meter-days whose readings changed since they were charged, oldest change first:
    those after the shard's cursor, and, when the shard's look behind is due, those just behind it
    that committed late. Shards split the meters (by id modulo `shards`) so several workers charge
    in parallel, each with its own cursor."""
    cursor_row = ChargeCursor.objects.filter(name=_cursor_name(shard, shards)).first()
    _, behind, ahead = _pending(cursor_row, timezone.now(), limit=limit, shard=shard, shards=shards)
    return sorted(behind + ahead, key=lambda row: (row[2], row[0], row[1]))[:limit]


def _pending(cursor_row, now: datetime, *, limit: int, shard: int, shards: int, horizon=None):
    """(whether the look behind was due, the changes behind the cursor, those after it)."""
    recheck = _recheck_due(cursor_row, now)
    behind = _behind(cursor_row, limit=limit, shard=shard, shards=shards) if recheck else []
    ahead = _ahead(cursor_row, limit=limit, shard=shard, shards=shards, horizon=horizon)
    return recheck, behind, ahead


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
    """One charging pass over one shard. Returns how many meter-days were charged and the accounts touched.

    The pass reads the next `limit` changes after its cursor by index (a keyset: what it costs
    does not grow with what was already charged) and moves the cursor to the last one. Every
    RECHECK_EVERY it also looks CURSOR_OVERLAP behind the cursor, for rows a long transaction
    committed after the cursor had passed their time."""
    started = timezone.now()
    name = _cursor_name(shard, shards)
    cursor_row = ChargeCursor.objects.filter(name=name).first()
    recheck, behind, ahead = _pending(
        cursor_row, started, limit=limit, shard=shard, shards=shards, horizon=_horizon(started)
    )
    _, accounts = charges_apply(keys=[(meter_id, day) for meter_id, day, _ in behind + ahead])
    # Days that could not be charged (no tariff yet) are passed over; saving a tariff in the
    # admin rewinds the cursors so that they are charged.
    defaults: dict = {}
    if ahead:
        defaults.update(position=ahead[-1][2], meter_id=ahead[-1][0], day=ahead[-1][1])
    elif cursor_row is None:
        defaults.update(position=EPOCH)
    if (recheck and len(behind) < limit) or cursor_row is None:
        defaults["rechecked_at"] = started
    if defaults:
        ChargeCursor.objects.update_or_create(name=name, defaults=defaults)
    return len(behind) + len(ahead), accounts


def meter_day_charge(*, meter_id: int, day: date) -> int:
    """Charge one meter-day now (a move-out's final charging); a day without a tariff is refused."""
    return charges_apply(keys=[(meter_id, day)], strict=True)[0]


def charges_release(*, meter_id: int, account: ConsumerAccount, after: datetime) -> int:
    """Give back what `account` was charged for the meter's intervals from `after` on (a move-out
    dated before readings already charged): the energy is refunded to it at the prices it was
    charged, the slots are cleared from the charged copy, and the days are marked for charging
    again, to the next holder. Runs in the caller's transaction. Returns the entries posted."""
    meter = Meter.objects.select_related("utility").get(pk=meter_id)
    balance = Balance.objects.select_for_update().get(account=account)
    prices, calendars = _Prices(), {}
    months: dict[tuple[int, date], dict[tuple[tuple[int, date], date], _Month]] = defaultdict(dict)
    released: list[ChargedDay] = []
    states = ChargedDay.objects.select_for_update().filter(
        meter_id=meter_id, day__gte=after.astimezone(UTC).date()
    )
    for state in states.order_by("day"):
        values, quality = values_unpack(bytes(state.values)), bytearray(state.quality)
        calendar = _Calendar.of(state.day, meter.utility, calendars)
        day_months: dict[tuple[int, date], _Month] = {}
        for slot in range(96):
            if slot_start(state.day, slot) < after or quality[slot] not in PRESENT:
                continue
            month_start = calendar.months[slot]
            pricing = prices.pricing(meter.utility, month_start)
            wh = -values[slot]
            nano = 0
            if pricing.tariff.kind != Tariff.Kind.PROGRESSIVE:
                nano = wh * prices.slot_rates(pricing, calendar)[slot]
            month = day_months.setdefault((account.pk, calendar.locals[slot].date()), _Month())
            month.add(wh, nano, new=False)
            values[slot], quality[slot] = 0, 0
        if not day_months:
            continue
        _by_month(months, day_months, (meter_id, state.day))
        state.values, state.quality = values_pack(values), bytes(quality)
        state.version += 1
        state.charged_at = (
            EPOCH  # charge the day again: its cleared slots belong to the next holder
        )
        released.append(state)
    entries = _post(
        {meter_id: meter},
        months,
        {},
        {account.pk: balance},
        prices,
        versions={(s.meter_id, s.day): s.version for s in released},
        closed=set(),
    )
    # The fixed charge of each local day wholly after `after` is the next holder's to pay.
    zone = meter.utility.zone
    first_day = after.astimezone(zone).date()
    if datetime.combine(first_day, datetime.min.time(), zone) < after:
        first_day += timedelta(days=1)
    paid = LedgerEntry.objects.filter(
        account=account,
        kind=LedgerEntry.Kind.FIXED_CHARGE,
        key__startswith=f"fixed:{account.pk}:",
        period_start__gte=datetime.combine(first_day, datetime.min.time(), zone),
    )
    for entry in paid.order_by("period_start"):
        _append(
            entries,
            balance,
            meter.utility,
            kind=LedgerEntry.Kind.FIXED_CHARGE,
            amount=-entry.amount,
            key=f"{entry.key}:released",
            description=f"{entry.description}: moved out before the day began",
            period_start=entry.period_start,
            period_end=entry.period_end,
            meta={"reverses": entry.pk},
        )
    _insert_entries(entries)
    balance.updated_at = timezone.now()
    _save(Balance, [balance], OPEN_FIELDS)
    _save(ChargedDay, released, ["values", "quality", "version", "charged_at"])
    return len(entries)
