"""Reads for the staff dashboard: what a utility's control room and counters need at a glance.

Every figure is a count (or sum) over one model, grouped by utility in one query whatever the
number of utilities, with the filters the figure's admin list uses, so the number shown is the
number of rows the list shows when it is clicked. Local days are each utility's own (its IANA
zone): "today" in Cairo and in Kolkata are different instants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet, Sum

from accounts.models import Utility
from billing.models import RelayCommand, TamperCase, TopUp
from core.timebuckets import local_midnight
from meters.models import IngestBatch, Meter
from meters.selectors import (
    REPORTING_STATUSES,
    meters_not_reporting_q,
    meters_reporting_q,
    utility_slot_totals,
)
from meters.storage import INTERVAL, floor_to_interval, slot_of
from outages.models import AffectedMeter, Compensation, Outage
from servicerequests.models import ServiceRequest

OUTAGES_AHEAD = timedelta(hours=48)  # planned outages shown as coming
DEADLINE_NEAR = timedelta(hours=24)  # open service requests shown as due soon
LOAD_DAYS = 7  # local days in the load chart, today (so far) the last
TOPUP_DAYS = 30  # local days in the top-ups by channel chart, today the last


@dataclass(frozen=True)
class LoadDay:
    day: date  # local
    wh: int | None  # None: no reading at all that day
    readings: int  # present readings, of every meter
    partial: bool  # today: the day is not over


@dataclass
class UtilityFigures:
    """One utility's figures at `now`. Field names say the rows they count."""

    utility: Utility
    now: datetime
    today: date  # local
    midnight: datetime  # today's first instant (UTC) in the utility's zone
    quarter_hours_today: int  # 96, or 92 / 100 on a daylight-saving day
    quarter_hours_elapsed: int  # quarter-hours of today that have ended
    outages_in_progress: int = 0
    outages_in_progress_accounts: int = 0
    outages_coming: int = 0  # published, starting before now + OUTAGES_AHEAD
    outages_coming_accounts: int = 0
    outages_detected: int = 0  # detected from the meters, in progress
    outages_detected_to_confirm: int = 0  # … of which no person has confirmed yet
    tamper_cases_open: int = 0
    disconnections_waiting: int = 0
    disconnections_sent_today: int = 0
    topups_pending: int = 0
    topups_failed_today: int = 0
    requests_overdue: int = 0
    requests_due_soon: int = 0  # deadline within DEADLINE_NEAR
    compensations_due: int = 0
    compensations_due_amount: Decimal = Decimal(0)
    meters_not_reporting: int = 0
    meters_reporting: int = 0
    batches_today: int = 0
    readings_today: int = 0
    load: list[LoadDay] = field(default_factory=list)

    @property
    def outages_until(self) -> datetime:
        return self.now + OUTAGES_AHEAD

    @property
    def deadline_until(self) -> datetime:
        return self.now + DEADLINE_NEAR

    @property
    def readings_expected(self) -> int:
        """Reporting meters × the quarter-hours of the local day that have ended."""
        return self.meters_reporting * self.quarter_hours_elapsed


def _each_utility_since(path: str, moment_field: str, since: dict[int, datetime]) -> Q:
    """Rows of each utility at or after its own instant (its local midnight, say)."""
    return reduce(
        or_,
        (Q(**{path: pk, f"{moment_field}__gte": moment}) for pk, moment in since.items()),
        Q(pk__in=[]),
    )


def _grouped(queryset: QuerySet, path: str, **aggregates) -> dict[int, dict]:
    rows = queryset.values(path).annotate(**aggregates).order_by()
    return {row[path]: row for row in rows}


def dashboard_figures(*, utility_ids: list[int], now: datetime) -> list[UtilityFigures]:
    """The dashboard of the utilities `utility_ids` at `now`, in the utilities' name order.

    Eleven queries whatever the number of utilities and meters: the utilities, then one grouped
    count per model (outages, their affected accounts, tamper cases, relay commands, top-ups,
    service requests, compensations, meters, ingest batches) and one aggregate of the readings of the
    last LOAD_DAYS local days (meters.selectors.utility_slot_totals: its docstring says what it
    costs). Each filter is served by an index of its table (utility or status first); the
    report of this work lists the few it still wants.
    """
    utilities = list(Utility.objects.filter(pk__in=utility_ids).order_by("name", "pk"))
    if not utilities:
        return []
    ids = [u.pk for u in utilities]
    figures: dict[int, UtilityFigures] = {}
    for utility in utilities:
        zone = utility.zone
        today = now.astimezone(zone).date()
        midnight = local_midnight(today, zone)
        tomorrow = local_midnight(today + timedelta(days=1), zone)
        figures[utility.pk] = UtilityFigures(
            utility=utility,
            now=now,
            today=today,
            midnight=midnight,
            quarter_hours_today=(tomorrow - midnight) // INTERVAL,
            quarter_hours_elapsed=max(0, (floor_to_interval(now) - midnight) // INTERVAL),
        )
    midnights = {pk: f.midnight for pk, f in figures.items()}

    in_progress = Q(status=Outage.Status.IN_PROGRESS)
    coming = Q(status=Outage.Status.PUBLISHED, planned_start__lt=now + OUTAGES_AHEAD)
    detected = in_progress & Q(source=Outage.Source.METERS)
    for pk, row in _grouped(
        Outage.objects.filter(in_progress | coming, utility_id__in=ids),
        "utility_id",
        in_progress=Count("pk", filter=in_progress),
        coming=Count("pk", filter=coming),
        detected=Count("pk", filter=detected),
        to_confirm=Count("pk", filter=detected & Q(confirmed_at__isnull=True)),
    ).items():
        figures[pk].outages_in_progress = row["in_progress"]
        figures[pk].outages_coming = row["coming"]
        figures[pk].outages_detected = row["detected"]
        figures[pk].outages_detected_to_confirm = row["to_confirm"]

    # The tamper queue's open cases (its index: utility, status, last event).
    for pk, row in _grouped(
        TamperCase.objects.filter(utility_id__in=ids, status__in=TamperCase.OPEN_STATUSES),
        "utility_id",
        count=Count("pk"),
    ).items():
        figures[pk].tamper_cases_open = row["count"]
    in_progress = Q(outage__status=Outage.Status.IN_PROGRESS)
    coming = Q(
        outage__status=Outage.Status.PUBLISHED, outage__planned_start__lt=now + OUTAGES_AHEAD
    )
    for pk, row in _grouped(
        AffectedMeter.objects.filter(in_progress | coming, outage__utility_id__in=ids),
        "outage__utility_id",
        in_progress=Count("account", filter=in_progress, distinct=True),
        coming=Count("account", filter=coming, distinct=True),
    ).items():
        figures[pk].outages_in_progress_accounts = row["in_progress"]
        figures[pk].outages_coming_accounts = row["coming"]

    waiting = Q(status=RelayCommand.Status.WAITING)
    sent_today = _each_utility_since("account__utility_id", "sent_at", midnights)
    for pk, row in _grouped(
        RelayCommand.objects.filter(
            waiting | sent_today,
            # The same rows, said so an index can find them (status; relay_sent_at): the
            # per-utility instants above are read row by row, which would mean every command.
            waiting | Q(sent_at__gte=min(midnights.values())),
            action=RelayCommand.Action.DISCONNECT,
            account__utility_id__in=ids,
        ),
        "account__utility_id",
        waiting=Count("pk", filter=waiting),
        sent_today=Count("pk", filter=sent_today),
    ).items():
        figures[pk].disconnections_waiting = row["waiting"]
        figures[pk].disconnections_sent_today = row["sent_today"]

    pending = Q(status=TopUp.Status.PENDING)
    failed_today = Q(status=TopUp.Status.FAILED) & _each_utility_since(
        "account__utility_id", "created_at", midnights
    )
    for pk, row in _grouped(
        TopUp.objects.filter(
            pending | failed_today,
            # Said so the partial indexes (pending; failed by created_at) can find the rows.
            pending | Q(status=TopUp.Status.FAILED, created_at__gte=min(midnights.values())),
            account__utility_id__in=ids,
        ),
        "account__utility_id",
        pending=Count("pk", filter=pending),
        failed_today=Count("pk", filter=failed_today),
    ).items():
        figures[pk].topups_pending = row["pending"]
        figures[pk].topups_failed_today = row["failed_today"]

    overdue = Q(deadline_at__lte=now)
    for pk, row in _grouped(
        ServiceRequest.objects.filter(
            utility_id__in=ids,
            status__in=ServiceRequest.OPEN,
            deadline_at__lte=now + DEADLINE_NEAR,
        ),
        "utility_id",
        overdue=Count("pk", filter=overdue),
        due_soon=Count("pk", filter=~overdue),
    ).items():
        figures[pk].requests_overdue = row["overdue"]
        figures[pk].requests_due_soon = row["due_soon"]

    for pk, row in _grouped(
        Compensation.objects.filter(utility_id__in=ids, status=Compensation.Status.PENDING),
        "utility_id",
        count=Count("pk"),
        amount=Sum("amount"),
    ).items():
        figures[pk].compensations_due = row["count"]
        figures[pk].compensations_due_amount = row["amount"] or Decimal(0)

    for pk, row in meter_counts_kept(utility_ids=ids, now=now).items():
        figures[pk].meters_not_reporting = row["silent"]
        figures[pk].meters_reporting = row["reporting"]

    for pk, row in _grouped(
        IngestBatch.objects.filter(
            _each_utility_since("utility_id", "received_at", midnights), utility_id__in=ids
        ),
        "utility_id",
        count=Count("pk"),
    ).items():
        figures[pk].batches_today = row["count"]

    _load_days_fill(figures, now=now)
    return list(figures.values())


def _load_days_fill(figures: dict[int, UtilityFigures], *, now: datetime) -> None:
    """Each utility's load of its last LOAD_DAYS local days and today's readings, cut from one
    read of the slot totals of the UTC days they touch."""
    first = min(
        local_midnight(f.today - timedelta(days=LOAD_DAYS - 1), f.utility.zone)
        for f in figures.values()
    )
    first = first.astimezone(UTC).date()
    last = now.astimezone(UTC).date()
    totals = slot_totals_kept(utility_ids=list(figures), first=first, last=last, now=now)
    for pk, figure in figures.items():
        zone, today = figure.utility.zone, figure.today
        slots = totals[pk]
        for offset in range(LOAD_DAYS - 1, -1, -1):
            day = today - timedelta(days=offset)
            left, right = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
            wh = readings = 0
            moment = left
            while moment < right:
                total = slots.get(slot_of(moment))
                if total is not None:
                    wh += total.wh
                    readings += total.present
                moment += INTERVAL
            figure.load.append(
                LoadDay(
                    day=day, wh=wh if readings else None, readings=readings, partial=day == today
                )
            )
        figure.readings_today = figure.load[-1].readings


def meter_counts_kept(*, utility_ids: list[int], now: datetime) -> dict[int, dict]:
    """Per utility, its meters reporting and not reporting. Every meter of the utility is counted
    (its last reading is on the meter row, which ingest rewrites, so an index on it would cost
    every push more than it saves here): a scan of the utility's meters, kept in the cache as
    slot_totals_kept's recent days are."""
    keep = settings.CONSOLE_LOAD_CACHE_SECONDS
    key = f"console:meters:{','.join(map(str, sorted(utility_ids)))}"
    counts = cache.get(key) if keep else None
    if counts is None:
        silent, reporting = meters_not_reporting_q(now=now), meters_reporting_q(now=now)
        counts = _grouped(
            Meter.objects.filter(utility_id__in=utility_ids, status__in=REPORTING_STATUSES),
            "utility_id",
            silent=Count("pk", filter=silent),
            reporting=Count("pk", filter=reporting),
        )
        if keep:
            cache.set(key, counts, keep)
    return counts


def slot_totals_kept(
    *, utility_ids: list[int], first: date, last: date, now: datetime
) -> dict[int, dict[tuple[date, int], object]]:
    """meters.selectors.utility_slot_totals, kept in the cache one UTC day at a time.

    The aggregate reads every meter-day of those days: seconds at a million meters. A day that
    ended more than a day ago changes only by late readings, so it is kept an hour; the last two
    days are kept CONSOLE_LOAD_CACHE_SECONDS (5 minutes), so a dashboard opened by every desk
    of a control room reads the big table at most that often. The days not in the cache are read
    in one query. 0 turns the cache off (the tests, which change readings between reads)."""
    keep = settings.CONSOLE_LOAD_CACHE_SECONDS
    ids = sorted(utility_ids)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    keys = {day: f"console:slots:{day}:{','.join(map(str, ids))}" for day in days}
    found = cache.get_many(list(keys.values())) if keep else {}
    missing = [day for day in days if keys[day] not in found]
    if missing:
        read = utility_slot_totals(utility_ids=ids, first=min(missing), last=max(missing))
        recent = now.astimezone(UTC).date() - timedelta(days=1)
        for day in missing:
            part = {
                pk: {k: v for k, v in slots.items() if k[0] == day} for pk, slots in read.items()
            }
            found[keys[day]] = part
            if keep:
                cache.set(keys[day], part, keep if day >= recent else max(keep, 3600))
    totals: dict[int, dict] = {pk: {} for pk in ids}
    for day in days:
        for pk, slots in found[keys[day]].items():
            totals[pk].update(slots)
    return totals


@dataclass(frozen=True)
class ChannelTotal:
    channel: str
    count: int
    amount: Decimal


def topups_by_channel(
    *, utility_ids: list[int], now: datetime, days: int = TOPUP_DAYS
) -> dict[int, tuple[datetime, list[ChannelTotal]]]:
    """Per utility: the first instant of its last `days` local days, and the top-ups paid since
    (balance top-ups, not estimate payments) by channel, every channel listed (0 when none),
    in one grouped query."""
    since = {}
    for utility in Utility.objects.filter(pk__in=utility_ids).only("pk", "timezone"):
        zone = utility.zone
        since[utility.pk] = local_midnight(
            now.astimezone(zone).date() - timedelta(days=days - 1), zone
        )
    if not since:
        return {}
    rows = (
        TopUp.objects.filter(
            _each_utility_since("account__utility_id", "paid_at", since),
            paid_at__gte=min(since.values()),  # for the index topup_paid_at
            status=TopUp.Status.SUCCEEDED,
            purpose=TopUp.Purpose.BALANCE,
            account__utility_id__in=list(since),
        )
        .values("account__utility_id", "channel")
        .annotate(count=Count("pk"), amount=Sum("amount"))
        .order_by()
    )
    found = {(r["account__utility_id"], r["channel"]): r for r in rows}
    return {
        pk: (
            start,
            [
                ChannelTotal(
                    channel=channel,
                    count=found.get((pk, channel), {}).get("count", 0),
                    amount=found.get((pk, channel), {}).get("amount") or Decimal(0),
                )
                for channel in TopUp.Channel.values
            ],
        )
        for pk, start in since.items()
    }
