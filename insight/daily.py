"""The daily pass over a utility's households: each account's use and peak demand of one local day,
kept in its UsageBaseline, and the alerts they call for (docs/insight-alerts.md).

1. insight_days_due (hourly): per active utility, its last finished local day, once.
2. accounts_chunk: the next CHUNK_SIZE accounts of the utility that held a meter that day, by id.
3. insight_accounts_update: for one chunk, the day's MeterDay rows read at once, cut to each
   account's tenancies; the baselines written in bulk, claimed by a conditional write so that a
   re-run (or a second worker) changes nothing and sends nothing twice; then the alerts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, Utility
from accounts.selectors import ALERTED, LIVE, utilities_active
from core.timebuckets import local_midnight
from insight.models import InsightPolicy, UsageBaseline
from insight.selectors.common import insight_policy_for
from meters.models import MeterAssignment, MeterDay
from meters.storage import INTERVAL, Quality, Series, utc_days
from notifications import categories
from notifications.services import alert_create

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
# A day is known when at least this share of its quarter-hours were read; below it the day is
# stored as null (unknown), never as a low day: a gap lowers no baseline and breaks no streak.
KNOWN_PERCENT = 90
# The high-usage rule judges a day against at least this many known days.
MIN_BASELINE_DAYS = 7
# Readings of a day may arrive hours after it ended (a head-end that collects once a night): the
# day is read this long after its local midnight.
SETTLE = timedelta(hours=4)
_PRESENT = (Quality.ACTUAL, Quality.ESTIMATED)


def insight_day_of(utility: Utility, now: datetime) -> date:
    """The utility's last local day that finished (and settled) by `now`."""
    return (now - SETTLE).astimezone(utility.zone).date() - timedelta(days=1)


def insight_days_due(*, now: datetime | None = None) -> list[tuple[int, date]]:
    """Per active utility, its last finished local day, returned once: the first hourly run that
    sees it claims it on the utility's InsightPolicy (a conditional update of `day_started`), so
    the other 23 runs of the day, on any worker, read no readings at all. A chain of chunks lost
    after its claim leaves the day unread (its accounts' day stays unknown, never zero)."""
    now = now or timezone.now()
    due = []
    for utility in utilities_active():
        day = insight_day_of(utility, now)
        InsightPolicy.objects.get_or_create(utility=utility)
        claimed = (
            InsightPolicy.objects.filter(utility=utility)
            .filter(Q(day_started__isnull=True) | Q(day_started__lt=day))
            .update(day_started=day)
        )
        if claimed:
            due.append((utility.pk, day))
    return due


def day_bounds(utility: Utility, day: date) -> tuple[datetime, datetime]:
    """The local day as UTC instants: 92, 96 or 100 quarter-hours."""
    zone = utility.zone
    return local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)


def accounts_chunk(
    *, utility: Utility, day: date, after: int, size: int | None = None
) -> list[int]:
    """The next `size` accounts of the utility, by id above `after`, that held a meter during the
    local day (a keyset page: each chunk reads only its own ids). Accounts closed before the day
    are passed over without looking at their tenancies."""
    start, end = day_bounds(utility, day)
    # `account_id > after` said again inside: PostgreSQL does not carry an inequality across the
    # join, and without it the semi-join reads the tenancies from the first account on, every
    # chunk (quadratic over a utility; measured by bench/insight.py).
    held = MeterAssignment.objects.filter(
        account_id=OuterRef("pk"), account_id__gt=after, start__lt=end
    ).filter(Q(end__isnull=True) | Q(end__gt=start))
    return list(
        ConsumerAccount.objects.filter(utility_id=utility.pk, pk__gt=after)
        .filter(Q(closed_at__isnull=True) | Q(closed_at__gt=start))
        .filter(Exists(held))
        .order_by("pk")
        .values_list("pk", flat=True)[: size or CHUNK_SIZE]
    )


# --- One account's day ---------------------------------------------------------------------


@dataclass(frozen=True)
class DayUse:
    wh: int | None  # None: fewer than KNOWN_PERCENT of the quarter-hours were read
    peak_w: int | None  # the highest 15-minute demand (Wh × 4); None: nothing was read
    peak_at: datetime | None  # that interval's start


def day_use(series_list: list[Series]) -> DayUse:
    """One account's local day from its meters' series (each already cut to the account's tenancy
    of it): the Wh of the present quarter-hours, and the household's highest demand, its meters'
    quarter-hours added up. A whole day of one meter (most accounts) is read with builtin calls;
    anything else slot by slot."""
    if not series_list:
        return DayUse(None, None, None)
    slots, start = len(series_list[0]), series_list[0].start
    first = series_list[0]
    present = first.quality.count(Quality.ACTUAL) + first.quality.count(Quality.ESTIMATED)
    if len(series_list) == 1 and present == slots:
        highest = max(first.values)
        peak_at = start + first.values.index(highest) * INTERVAL
        return DayUse(sum(first.values), highest * 4, peak_at)
    household: list[int | None] = [None] * slots
    present = 0
    for series in series_list:
        for i, (wh, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality in _PRESENT:
                present += 1
                household[i] = wh if household[i] is None else household[i] + wh
    read = [(wh, i) for i, wh in enumerate(household) if wh is not None]
    if not read:
        return DayUse(None, None, None)
    highest, index = max(read, key=lambda pair: (pair[0], -pair[1]))  # the first of equal peaks
    known = present * 100 >= KNOWN_PERCENT * slots * len(series_list)
    return DayUse(
        sum(wh for wh, _ in read) if known else None, highest * 4, start + index * INTERVAL
    )


# --- The high-usage rule --------------------------------------------------------------------


@dataclass(frozen=True)
class Streak:
    days: int  # consecutive high days (unknown days in between neither count nor break it)
    start: int | None  # index in the history of its first day
    baseline_wh: float | None  # the mean of the known days before it
    usage_wh: float | None  # the mean of its known days


def streak_step(
    *, history: list[int | None], streak: int, percent: int, baseline_days: int
) -> Streak:
    """The streak after the history's last day (today), from the streak before it.

    1. An unknown day changes nothing: missing readings are not low use.
    2. A running streak is judged against the baseline before its first day; with none running,
       today is judged against the baseline_days before it.
    3. The baseline is the mean of the known days of that window, at least MIN_BASELINE_DAYS of
       them and above zero; otherwise nothing is judged and the streak ends.
    4. Today is high when its use is at least `percent` above the baseline.
    """
    today = history[-1]
    past = history[:-1]
    known_at = [i for i, wh in enumerate(past) if wh is not None]
    # The streak's first day is its streak-th known day from the end (none: fallen off the list).
    start = (known_at[-streak] if len(known_at) >= streak else None) if streak else len(past)
    if today is None:
        return _streak(history, streak, start, baseline_days)
    if start is None:
        return Streak(0, None, None, None)
    window = [wh for wh in past[max(0, start - baseline_days) : start] if wh is not None]
    if len(window) < MIN_BASELINE_DAYS or sum(window) <= 0:
        return Streak(0, None, None, None)
    if today * 100 * len(window) >= sum(window) * (100 + percent):
        return _streak(history, streak + 1, start, baseline_days)
    return Streak(0, None, None, None)


def _streak(history: list[int | None], days: int, start: int | None, baseline_days: int) -> Streak:
    if not days or start is None:
        return Streak(days, start, None, None)
    window = [wh for wh in history[max(0, start - baseline_days) : start] if wh is not None]
    run = [wh for wh in history[start:] if wh is not None]
    return Streak(
        days,
        start,
        sum(window) / len(window) if window else None,
        sum(run) / len(run) if run else None,
    )


# --- A chunk of accounts --------------------------------------------------------------------


def _tenancies(account_ids: list[int], start: datetime, end: datetime) -> list[tuple]:
    """(meter, account, start, end) of the accounts' tenancies overlapping [start, end)."""
    return list(
        MeterAssignment.objects.filter(account_id__in=account_ids, start__lt=end)
        .filter(Q(end__isnull=True) | Q(end__gt=start))
        .order_by("meter_id", "start")
        .values_list("meter_id", "account_id", "start", "end")
    )


def _meter_days(meter_ids: list[int], first: date, last: date) -> dict[int, dict]:
    """The stored rows of the meters' UTC days first … last, in one query: {meter: {day: (values,
    quality)}}. On PostgreSQL in binary, as meters.selectors.meter_days reads one meter's."""
    rows_by_meter: dict[int, dict] = defaultdict(dict)
    if not meter_ids:
        return rows_by_meter
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            # The primary key (meter_id, day): one short range per meter.
            cursor.execute(
                "SELECT meter_id, day, values, quality FROM meters_meterday "
                "WHERE meter_id = ANY(%s::bigint[]) AND day BETWEEN %s AND %s",
                [meter_ids, first, last],
                binary=True,
            )
            rows = cursor.fetchall()
    else:
        rows = MeterDay.objects.filter(
            meter_id__in=meter_ids, day__gte=first, day__lte=last
        ).values_list("meter_id", "day", "values", "quality")
    for meter_id, day, values, quality in rows:
        rows_by_meter[meter_id][day] = (bytes(values), bytes(quality))
    return rows_by_meter


def _history(baseline: UsageBaseline | None, day: date, wh: int | None, keep: int) -> list:
    """The baseline's days with `day` appended, a gap since its last day filled with nulls."""
    if baseline is None:
        return [wh]
    gap = (day - baseline.last_day).days - 1
    days = list(baseline.daily_wh)[-keep:] + [None] * min(gap, keep) + [wh]
    return days[-keep:]


def insight_accounts_update(*, utility_id: int, day: date, account_ids: list[int]) -> int:
    """Bring a chunk of accounts' baselines to `day` and send what it tells. Returns how many
    baselines moved (0 on a re-run).

    1. Accounts whose baseline already holds the day are left alone.
    2. Their tenancies overlapping the local day, and the rows of those meters' UTC days (a local
       day spans two), are read once for the chunk; each account's series is cut to its tenancy.
    3. Per account: the day's Wh (null under KNOWN_PERCENT read), its peak demand, the history
       appended (baseline_days + high_usage_days days kept), the streak stepped.
    4. In one transaction: the baselines written only where they still end where they were read
       (a claim: a concurrent run of the same chunk writes nothing), then the alerts of the
       claimed accounts to their alert receivers.
    """
    utility = Utility.objects.get(pk=utility_id)
    policy = insight_policy_for(utility)
    keep = policy.baseline_days + policy.high_usage_days
    baselines = UsageBaseline.objects.in_bulk(account_ids)
    todo = [a for a in account_ids if a not in baselines or baselines[a].last_day < day]
    if not todo:
        return 0
    start, end = day_bounds(utility, day)
    tenancies = _tenancies(todo, start, end)
    days = utc_days(start, end)
    stored = _meter_days(sorted({t[0] for t in tenancies}), days[0], days[-1])
    series_by_account: dict[int, list[Series]] = defaultdict(list)
    for meter_id, account_id, held_from, held_to in tenancies:
        series = Series(start, end, stored.get(meter_id, {}))
        if held_from > start or (held_to is not None and held_to < end):
            series.keep_only([(held_from, held_to)])
        series_by_account[account_id].append(series)

    # A holder sees the account only from their link's visible_from (a new registered mobile):
    # the days before it are not theirs to be compared with or quoted (docs/tenancy.md).
    holders_since = {
        account_id: since.astimezone(utility.zone).date()
        for account_id, since in AccountLink.objects.filter(
            LIVE,
            account_id__in=todo,
            role=AccountLink.Role.HOLDER,
            visible_from__isnull=False,
        )
        .values("account_id")
        .annotate(since=Max("visible_from"))
        .values_list("account_id", "since")
    }
    now = timezone.now()
    rows: list[UsageBaseline] = []
    read_last_day: dict[int, date | None] = {}
    told: dict[int, tuple[DayUse, Streak | None, date | None]] = {}
    for account_id in todo:
        use = day_use(series_by_account.get(account_id, []))
        baseline = baselines.get(account_id)
        history = _history(baseline, day, use.wh, keep)
        streak, alerted_from = (
            (baseline.streak, baseline.alerted_streak_from) if baseline else (0, None)
        )
        if account_id in holders_since:
            hidden = (holders_since[account_id] - (day - timedelta(days=len(history) - 1))).days
            cut = min(max(hidden, 0), len(history))
            if any(wh is not None for wh in history[:cut]):
                # Days before the holder's: hidden once, and a streak over them starts again.
                history[:cut] = [None] * cut
                streak = 0
        step = None
        if policy.high_usage_percent:
            step = streak_step(
                history=history,
                streak=streak,
                percent=policy.high_usage_percent,
                baseline_days=policy.baseline_days,
            )
            streak = step.days
        else:
            streak = 0
        # The streak is told once, when it reaches high_usage_days: its first day is the key.
        first_day = None
        if step is not None and step.days >= policy.high_usage_days and step.start is not None:
            first_day = day - timedelta(days=len(history) - 1 - step.start)
            if alerted_from != first_day:
                alerted_from = first_day
            else:
                first_day = None
        rows.append(
            UsageBaseline(
                account_id=account_id,
                last_day=day,
                daily_wh=history,
                streak=streak,
                alerted_streak_from=alerted_from,
                peak_demand_w=use.peak_w,
                updated_at=now,
            )
        )
        read_last_day[account_id] = baseline.last_day if baseline else None
        told[account_id] = (use, step, first_day)

    with transaction.atomic():
        claimed = _baselines_write(rows, read_last_day)
        _alerts_send(utility, policy, day, claimed, told)
    return len(claimed)


# The chunk's baselines travel as column arrays (no per-row parameters). An update applies only
# where the row still ends at the day it was read with, an insert only where no row exists: a
# concurrent run of the same chunk (a lost "started" mark, a redelivered task) claims nothing.
_UPDATE_CLAIMED = """
    UPDATE insight_usagebaseline t SET last_day = v.last_day, daily_wh = v.daily_wh,
           streak = v.streak, alerted_streak_from = v.alerted_streak_from,
           peak_demand_w = v.peak_demand_w, updated_at = v.updated_at
    FROM unnest(%s::bigint[], %s::date[], %s::jsonb[], %s::int[], %s::date[], %s::int[],
                %s::timestamptz[], %s::date[])
         AS v(account_id, last_day, daily_wh, streak, alerted_streak_from, peak_demand_w,
              updated_at, read_last_day)
    WHERE t.account_id = v.account_id AND t.last_day = v.read_last_day
    RETURNING t.account_id
"""
_INSERT_NEW = """
    INSERT INTO insight_usagebaseline
           (account_id, last_day, daily_wh, streak, alerted_streak_from, peak_demand_w, updated_at)
    SELECT * FROM unnest(%s::bigint[], %s::date[], %s::jsonb[], %s::int[], %s::date[], %s::int[],
                         %s::timestamptz[])
    ON CONFLICT (account_id) DO NOTHING RETURNING account_id
"""


def _baselines_write(rows: list[UsageBaseline], read_last_day: dict[int, date | None]) -> set[int]:
    """Write the chunk's baselines where each still ends at the day it was read with (new ones
    where none exists yet); return the accounts written. On PostgreSQL one UPDATE and one INSERT
    from column arrays; elsewhere (the embedded default, demo sizes) row by row."""
    old = [r for r in rows if read_last_day[r.account_id] is not None]
    new = [r for r in rows if read_last_day[r.account_id] is None]
    if connection.vendor != "postgresql":
        claimed = set()
        fields = ["last_day", "daily_wh", "streak", "alerted_streak_from", "peak_demand_w"]
        for row in old:
            if UsageBaseline.objects.filter(
                pk=row.account_id, last_day=read_last_day[row.account_id]
            ).update(**{f: getattr(row, f) for f in fields}, updated_at=row.updated_at):
                claimed.add(row.account_id)
        existing = set(
            UsageBaseline.objects.filter(pk__in=[r.account_id for r in new]).values_list(
                "pk", flat=True
            )
        )
        UsageBaseline.objects.bulk_create([r for r in new if r.account_id not in existing])
        return claimed | {r.account_id for r in new if r.account_id not in existing}

    import psycopg
    from psycopg.types.json import Jsonb

    def columns(batch: list[UsageBaseline]) -> list[list]:
        return [
            [r.account_id for r in batch],
            [r.last_day for r in batch],
            [Jsonb(r.daily_wh) for r in batch],
            [r.streak for r in batch],
            [r.alerted_streak_from for r in batch],
            [r.peak_demand_w for r in batch],
            [r.updated_at for r in batch],
        ]

    claimed: set[int] = set()
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        if old:
            cursor.execute(
                _UPDATE_CLAIMED, [*columns(old), [read_last_day[r.account_id] for r in old]]
            )
            claimed.update(pk for (pk,) in cursor.fetchall())
        if new:
            cursor.execute(_INSERT_NEW, columns(new))
            claimed.update(pk for (pk,) in cursor.fetchall())
    return claimed


def _kwh(wh: float) -> str:
    return str((Decimal(wh) / 1000).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _kw(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _alerts_send(
    utility: Utility,
    policy: InsightPolicy,
    day: date,
    claimed: set[int],
    told: dict[int, tuple[DayUse, Streak | None, date | None]],
) -> int:
    """The high-usage and sanctioned-load alerts of the claimed accounts, to every live link that
    receives the account's alerts. Each is keyed by its event (the streak's first day; the local
    day), so even a repeated call sends it once."""
    loads: dict[int, Decimal] = {}
    if policy.sanctioned_load_alerts:
        loads = dict(
            ConsumerAccount.objects.filter(
                pk__in=claimed, sanctioned_load_kw__isnull=False
            ).values_list("pk", "sanctioned_load_kw")
        )
    alerts: dict[int, list[tuple[str, str, dict]]] = defaultdict(list)
    for account_id in claimed:
        use, step, streak_from = told[account_id]
        if streak_from is not None and step.baseline_wh and step.usage_wh is not None:
            percent = round((step.usage_wh / step.baseline_wh - 1) * 100)
            alerts[account_id].append(
                (
                    categories.HIGH_USAGE,
                    f"insight:{account_id}:high-usage:{streak_from.isoformat()}",
                    {
                        "days": step.days,
                        "usage_kwh": _kwh(step.usage_wh),
                        "baseline_kwh": _kwh(step.baseline_wh),
                        "percent": percent,
                    },
                )
            )
        sanctioned = loads.get(account_id)
        if sanctioned is not None and use.peak_w is not None and use.peak_w > sanctioned * 1000:
            alerts[account_id].append(
                (
                    categories.SANCTIONED_LOAD_EXCEEDED,
                    f"insight:{account_id}:sanctioned-load:{day.isoformat()}",
                    {
                        "demand_at": use.peak_at,
                        "demand_kw": _kw(Decimal(use.peak_w) / 1000),
                        "sanctioned_kw": _kw(sanctioned),
                    },
                )
            )
    if not alerts:
        return 0
    consumer_ids = dict(
        ConsumerAccount.objects.filter(pk__in=alerts).values_list("pk", "consumer_id")
    )
    sent = 0
    for link in AccountLink.objects.filter(ALERTED, account_id__in=alerts).select_related("user"):
        account_id = link.account_id
        for category, key, context in alerts[account_id]:
            _, created = alert_create(
                user=link.user,
                category=category,
                dedupe_key=key,
                context={
                    **context,
                    "account_id": account_id,
                    "consumer_id": consumer_ids[account_id],
                },
                utility=utility,
            )
            sent += created
    return sent
