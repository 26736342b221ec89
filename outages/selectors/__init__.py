"""Reads for outages: who a scope touches, what a consumer sees, when reminders are due. The place
words and notice previews are in places.py, the planner's grid tree in grid.py; both are read
from here too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from accounts.models import AccountLink, User, Utility
from accounts.selectors import ALERTED, READABLE, visible_to
from core.errors import NotFound
from meters.models import Meter, Transformer
from outages.models import (
    AffectedMeter,
    Compensation,
    ExemptionRequest,
    Outage,
    OutageNotice,
    ReminderSchedule,
)

# Re-exported: callers read every outage selector from `outages.selectors`.
from outages.selectors.grid import (  # noqa: F401
    GridNode,
    UtilityGrid,
    grid_counts,
    grid_counts_query,
    grid_tree,
)
from outages.selectors.places import (  # noqa: F401
    PLACE_AREAS_SHOWN,
    PLACE_TEXT_LIMIT,
    outage_area_text,
    outage_notice_category,
    outage_notice_context,
    outage_notice_preview,
    outage_place,
)


def outage_scope_meters(*, outage: Outage) -> QuerySet[Meter]:
    """Meters in the outage's scope as it stands now: areas → feeders → transformers → meters, or
    single meters; removed meters are not supplied and are left out."""
    # The grid's few rows first (areas → feeders → transformers), then the meters by two lists
    # of ids: each an index scan of the meter table (transformer_id, pk), joined by a BitmapOr.
    # An OR of subqueries over the grid's joins instead read every meter of the utility (bench at
    # 1M meters: 400 ms for one feeder of 5,000). Each meter appears once: no DISTINCT.
    transformer_ids = list(
        Transformer.objects.filter(
            Q(feeder__area__in=outage.areas.all())
            | Q(feeder__in=outage.feeders.all())
            | Q(pk__in=outage.transformers.all())
        ).values_list("pk", flat=True)
    )
    meter_ids = list(outage.meters.values_list("pk", flat=True))
    return (
        Meter.objects.filter(utility_id=outage.utility_id)
        .exclude(status=Meter.Status.REMOVED)
        .filter(Q(transformer_id__anyof=transformer_ids) | Q(pk__anyof=meter_ids))
    )


def outage_meters(*, outage: Outage) -> QuerySet[Meter]:
    """The outage's meters: the published snapshot, or for a draft its scope now."""
    if outage.status == Outage.Status.DRAFT:
        return outage_scope_meters(outage=outage)
    return Meter.objects.filter(pk__in=outage.affected.values("meter_id"))


def outage_meter_count(*, outage: Outage) -> int:
    """How many meters the outage affects, for staff: its snapshot's, or its scope's for a draft
    and while the snapshot of a large planned outage is still being written with its notice (a
    cancelled one's stays as far as its notice went: the meters whose people were told)."""
    streaming = outage.status == Outage.Status.PUBLISHED and outage.snapshot_through is not None
    if outage.status == Outage.Status.DRAFT or streaming:
        return outage_scope_meters(outage=outage).count()
    return outage.affected.count()


def outage_account_ids(*, outage: Outage) -> QuerySet:
    """Accounts to tell: those holding the outage's meters now (a published outage's snapshot
    named who held them then; a tenant who has moved in since is told, one who left is not).
    Each once, as a `values("account_id")` query (a subquery, or the SELECT of an INSERT)."""
    return (
        outage_meters(outage=outage)
        .exclude(account=None)
        .values("account_id")
        .order_by()
        .distinct()
    )


def outage_user_ids(*, outage: Outage) -> QuerySet:
    """Users to tell: those with a live link to an affected account, each once."""
    return (
        AccountLink.objects.filter(
            account_id__in=outage_account_ids(outage=outage),
            unlinked_at=None,
            receives_alerts=True,
        )
        .values_list("user_id", flat=True)
        .distinct()
        .order_by("user_id")
    )


@dataclass(frozen=True)
class AudiencePage:
    user_ids: QuerySet  # a values_list subquery: the people with live links receiving alerts
    last: int | None  # the page's last AffectedMeter id; None when no meter was left
    more: bool  # a full page: more may follow


def outage_audience_page(*, outage: Outage, after: int, size: int) -> AudiencePage:
    """One page of whom to tell of a published outage, for a notice streamed a chunk at a time:
    the outage's next `size` affected meters after AffectedMeter id `after` (the snapshot's own
    order, read by (outage, id)), and the people whose live links to the accounts holding them
    now receive alerts. A person met in two pages is in both (their unique key keeps one notice). Each page reads its own meters only, whatever the
    outage's size."""
    ids = list(
        AffectedMeter.objects.filter(outage=outage, pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)[:size]
    )
    if not ids:
        none = AccountLink.objects.none()
        return AudiencePage(user_ids=none, last=None, more=False)
    meters = AffectedMeter.objects.filter(outage=outage, pk__gt=after, pk__lte=ids[-1])
    accounts = (
        Meter.objects.filter(pk__in=meters.values("meter_id"))
        .exclude(account=None)
        .values("account_id")
        .order_by()
        .distinct()
    )
    users = AccountLink.objects.filter(ALERTED, account_id__in=accounts).values_list(
        "user_id", flat=True
    )
    return AudiencePage(user_ids=users, last=ids[-1], more=len(ids) == size)


@dataclass(frozen=True)
class NoticeSummary:
    version: int
    by_app: int
    by_sms: int
    on_the_way: int
    not_delivered: int
    late: int  # reached the account less than the utility's notice period before the start


def outage_notice_summary(*, outage: Outage) -> NoticeSummary | None:
    """How the notice of the schedule in force travelled, for the admin; None when none was sent
    account by account (a draft, an unplanned outage, or one published before notices were)."""
    rows = OutageNotice.objects.filter(outage=outage, version=outage.version)
    counts = {
        (row["status"], row["channel"]): row["n"]
        for row in rows.values("status", "channel").annotate(n=Count("id")).order_by()
    }
    if not counts:
        return None
    deadline = outage.planned_start - timedelta(hours=outage.utility.outage_notice_hours)
    unfinished = set(OutageNotice.UNFINISHED)
    return NoticeSummary(
        version=outage.version,
        by_app=counts.get((OutageNotice.Status.SENT, OutageNotice.Channel.PUSH), 0),
        by_sms=counts.get((OutageNotice.Status.SENT, OutageNotice.Channel.SMS), 0),
        on_the_way=sum(n for (status, _), n in counts.items() if status in unfinished),
        not_delivered=sum(
            n
            for (status, _), n in counts.items()
            if status in (OutageNotice.Status.FAILED, OutageNotice.Status.DROPPED)
        ),
        late=rows.filter(sent_at__gt=deadline).count(),
    )


@dataclass(frozen=True)
class Preview:
    meters: int
    accounts: int
    users: int
    sample: list[Meter]


def outage_preview(*, outage: Outage, sample_size: int = 25) -> Preview:
    meters = outage_meters(outage=outage)
    return Preview(
        meters=meters.count(),
        accounts=meters.exclude(account=None).values("account_id").distinct().count(),
        users=outage_user_ids(outage=outage).count(),
        sample=list(
            meters.select_related("account", "transformer").order_by("serial")[:sample_size]
        ),
    )


def reminder_at(*, outage: Outage, schedule: ReminderSchedule | None = None) -> datetime | None:
    """When the evening-before reminder of this outage is due (UTC), or None if none will go."""
    if outage.kind != Outage.Kind.PLANNED:
        return None
    if schedule is None:
        schedule = ReminderSchedule.objects.filter(utility_id=outage.utility_id).first()
        schedule = schedule or ReminderSchedule(utility_id=outage.utility_id)
    if not schedule.enabled:
        return None
    zone = outage.utility.zone
    day = outage.planned_start.astimezone(zone).date() - timedelta(days=schedule.days_before)
    return datetime.combine(day, schedule.local_time, zone).astimezone(UTC)


def outages_reminder_due(*, now: datetime) -> list[Outage]:
    """Published planned outages whose reminder is due and not yet sent for the current version.
    A reminder whose time came before the notice was given is not sent: the notice is recent."""
    candidates = (
        Outage.objects.filter(
            kind=Outage.Kind.PLANNED,
            status=Outage.Status.PUBLISHED,
            planned_start__gt=now,
            planned_start__lte=now + timedelta(days=8),
        )
        .exclude(reminded_version=F("version"))
        .select_related("utility")
    )
    schedules = {s.utility_id: s for s in ReminderSchedule.objects.all()}
    due = []
    for outage in candidates:
        at = reminder_at(outage=outage, schedule=schedules.get(outage.utility_id))
        if at is not None and outage.notice_given_at < at <= now:
            due.append(outage)
    return due


def _held_now(user: User, meter_path: str, planned_end: str) -> Q:
    """The meter is on an account the user holds now (an open tenancy and a live link) whose
    tenancy began before the outage ended: a new tenant is not shown the meter's past outages."""
    tenancy = f"{meter_path}__assignments"
    return Q(
        **{
            f"{tenancy}__end__isnull": True,
            f"{tenancy}__account__links__user": user,
            f"{tenancy}__account__links__unlinked_at__isnull": True,
            f"{tenancy}__account__links__can_view": True,
            f"{tenancy}__start__lt": F(planned_end),
        }
    )


def outages_for_user(*, user: User) -> QuerySet[Outage]:
    """Upcoming and active outages touching the meters the user holds now, soonest first: the
    snapshot taken at publishing does not decide, so a tenant who moved in since is told and
    one who moved out is not."""
    return (
        Outage.objects.filter(
            _held_now(user, "affected__meter", "planned_end"),
            status__in=[Outage.Status.PUBLISHED, Outage.Status.IN_PROGRESS],
        )
        .select_related("utility")
        .distinct()
        .order_by("planned_start", "id")
    )


def _touches_user(user: User) -> Q:
    """An outage on a meter the user holds now, or one that touched the user's account (the
    publish-time snapshot) within the user's own period of it."""
    return _held_now(user, "affected__meter", "planned_end") | visible_to(
        user, account_path="affected__account", moment="planned_end"
    )


def outage_get_for_user(*, user: User, outage_id: int) -> Outage:
    """A published (or later) outage that touches one of the user's meters in the user's period."""
    outage = (
        Outage.objects.exclude(status=Outage.Status.DRAFT)
        .filter(_touches_user(user), pk=outage_id)
        .select_related("utility")
        .first()
    )
    if outage is None:
        raise NotFound("You have no such outage.", code="outage_not_found")
    return outage


def outage_meters_for_user(*, user: User, outage: Outage) -> list[AffectedMeter]:
    """The user's meters in the outage, each with `reader_account`: the user's own account for it
    (the one holding it now, or the one named when the notice went out), never another tenant's."""
    rows = list(
        AffectedMeter.objects.filter(
            _held_now(user, "meter", "outage__planned_end")
            | visible_to(user, account_path="account", moment="outage__planned_end"),
            outage=outage,
        )
        .select_related("meter__account", "account")
        .distinct()
        .order_by("meter__serial")
    )
    mine = set(AccountLink.objects.filter(READABLE, user=user).values_list("account_id", flat=True))
    for row in rows:
        row.reader_account = row.account if row.account_id in mine else row.meter.account
    return rows


def compensations_for_user(*, user: User) -> QuerySet[Compensation]:
    """The user's compensations; a pending one that late evidence brought to nothing is not
    shown (it is kept, should the evidence move again); one credited then taken back is."""
    return (
        Compensation.objects.filter(visible_to(user, moment="failure_at"))
        .exclude(status=Compensation.Status.PENDING, amount=0)
        .select_related("account", "utility")
        .distinct()
        .order_by("-failure_at", "-id")
    )


# --- The standards desk ---------------------------------------------------------------------


def reminders_upcoming(
    *, schedule: ReminderSchedule, limit: int = 3
) -> list[tuple[Outage, datetime | None]]:
    """The next published planned outages of the schedule's utility, each with its reminder time."""
    outages = (
        Outage.objects.filter(
            utility_id=schedule.utility_id,
            status=Outage.Status.PUBLISHED,
            kind=Outage.Kind.PLANNED,
            planned_start__gt=timezone.now(),
        )
        .select_related("utility")
        .order_by("planned_start")[:limit]
    )
    return [(outage, reminder_at(outage=outage, schedule=schedule)) for outage in outages]


def exemption_covered(*, exemption: ExemptionRequest) -> list[tuple[str, int]]:
    """How many compensations of the exemption's event and standard are in each status."""
    rows = Compensation.objects.filter(standard=exemption.standard, event_key=exemption.event_key)
    return [
        (row["status"], row["n"])
        for row in rows.values("status").annotate(n=Count("id")).order_by("status")
    ]


@dataclass(frozen=True)
class OpenEvent:
    standard: str
    event_key: str
    consumers: int
    deadline: datetime
    zone: Any  # the utility's ZoneInfo, to show the deadline in


def exemption_events_open(*, compensations: QuerySet[Compensation]) -> list[OpenEvent]:
    """Events an exemption may still be filed for (pending compensations whose window is open),
    soonest deadline first, from the given (staff-scoped) compensations."""
    rows = (
        compensations.filter(
            status=Compensation.Status.PENDING, exemption_deadline__gt=timezone.now()
        )
        .values("standard", "event_key", "utility_id")
        .annotate(n=Count("id"), deadline=Min("exemption_deadline"))
        .order_by("deadline")
    )
    rows = list(rows)
    zones = {
        utility.pk: utility.zone
        for utility in Utility.objects.filter(pk__in={row["utility_id"] for row in rows})
    }
    return [
        OpenEvent(
            row["standard"], row["event_key"], row["n"], row["deadline"], zones[row["utility_id"]]
        )
        for row in rows
    ]
