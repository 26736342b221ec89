"""The admin index as a dashboard: each of the staff member's utilities with its figures, each
figure a number linking to the admin list of exactly those rows, and two charts.

The figures come from console.selectors; this module only words them (gettext, plurals), links
them (to lists the staff member may open) and draws the charts (core.charts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import Utility
from billing.models import RelayCommand, TamperCase, TopUp
from console import selectors
from console.charts import load_chart, topup_chart
from console.selectors import UtilityFigures
from core.admin import staff_utility_ids
from core.money import money_text
from core.timebuckets import moment_text
from meters.models import IngestBatch, Meter
from meters.selectors import NOT_REPORTING_AFTER
from outages.models import Compensation, Disconnection, Outage
from servicerequests.models import ServiceRequest

# With more utilities than this, the dashboard shows one at a time (a chooser above): a
# superuser of forty utilities gets a page that loads, not forty sections.
SECTIONS_AT_ONCE = 4


@dataclass
class Link:
    text: str
    url: str | None  # None: the staff member may not open that list


@dataclass
class Card:
    key: str  # names the figure for tests and styles
    number: str
    label: str
    url: str | None
    note: str = ""
    alert: bool = False  # a figure someone should act on now
    links: list[Link] = field(default_factory=list)


@dataclass
class ChannelRow:
    label: str
    count: int
    amount: str
    url: str | None


@dataclass
class Section:
    utility: Utility
    as_of: str
    cards: list[Card]
    load_chart: SafeString
    topup_chart: SafeString
    channels: list[ChannelRow]
    topups_since: str


def changelist_url(request, model: type[models.Model], params: dict) -> str | None:
    """The admin list of `model` filtered by `params`, if the staff member may open it."""
    model_admin = admin.site._registry.get(model)
    if model_admin is None or not model_admin.has_view_or_change_permission(request):
        return None
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(params)}"


def _instant(moment: datetime) -> str:
    """An instant for a list's filter: UTC, to the second, as the admin's lookups parse it."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _count(n: int) -> str:
    return f"{n:,}"


def _disconnections_url(request, utility: Utility, params: dict) -> str | None:
    """Relay commands (billing) list disconnections for cashiers and support; the standards
    desk's Disconnections list holds the same rows for approvers."""
    scoped = {**params, "account__utility__id__exact": utility.pk}
    return changelist_url(
        request, RelayCommand, {"action__exact": RelayCommand.Action.DISCONNECT, **scoped}
    ) or changelist_url(request, Disconnection, scoped)


def figure_cards(request, f: UtilityFigures) -> list[Card]:
    u = f.utility
    own = {"utility__id__exact": u.pk}
    by_account = {"account__utility__id__exact": u.pk}
    money = {"currency": u.currency, "minor_unit": u.currency_minor_unit}
    reporting_hours = int(NOT_REPORTING_AFTER.total_seconds() // 3600)
    cards = [
        Card(
            key="outages_in_progress",
            number=_count(f.outages_in_progress),
            label=ngettext("outage in progress", "outages in progress", f.outages_in_progress),
            url=changelist_url(
                request, Outage, {"status__exact": Outage.Status.IN_PROGRESS, **own}
            ),
            note=ngettext(
                "%(count)s consumer account affected",
                "%(count)s consumer accounts affected",
                f.outages_in_progress_accounts,
            )
            % {"count": _count(f.outages_in_progress_accounts)},
            alert=f.outages_in_progress > 0,
        ),
        Card(
            key="outages_coming",
            number=_count(f.outages_coming),
            label=ngettext(
                "planned outage in the next 48 h",
                "planned outages in the next 48 h",
                f.outages_coming,
            ),
            url=changelist_url(
                request,
                Outage,
                {
                    "status__exact": Outage.Status.PUBLISHED,
                    "planned_start__lt": _instant(f.outages_until),
                    **own,
                },
            ),
            note=ngettext(
                "%(count)s consumer account to be affected",
                "%(count)s consumer accounts to be affected",
                f.outages_coming_accounts,
            )
            % {"count": _count(f.outages_coming_accounts)},
        ),
        Card(
            key="outages_detected",
            number=_count(f.outages_detected),
            label=ngettext(
                "outage detected from meters", "outages detected from meters", f.outages_detected
            ),
            url=changelist_url(request, Outage, {"detected": "open", **own}),
            alert=f.outages_detected_to_confirm > 0,
            links=[
                Link(
                    ngettext(
                        "%(count)s awaiting confirmation",
                        "%(count)s awaiting confirmation",
                        f.outages_detected_to_confirm,
                    )
                    % {"count": _count(f.outages_detected_to_confirm)},
                    changelist_url(request, Outage, {"detected": "to_confirm", **own}),
                ),
                Link(
                    ngettext(
                        "%(count)s tamper case open",
                        "%(count)s tamper cases open",
                        f.tamper_cases_open,
                    )
                    % {"count": _count(f.tamper_cases_open)},
                    changelist_url(request, TamperCase, {"open": "yes", **own}),
                ),
            ],
        ),
        Card(
            key="disconnections_waiting",
            number=_count(f.disconnections_waiting),
            label=ngettext(
                "disconnection waiting to be sent",
                "disconnections waiting to be sent",
                f.disconnections_waiting,
            ),
            url=_disconnections_url(request, u, {"status__exact": RelayCommand.Status.WAITING}),
            note=_("held for an allowed time"),
        ),
        Card(
            key="disconnections_sent_today",
            number=_count(f.disconnections_sent_today),
            label=ngettext(
                "disconnection sent today",
                "disconnections sent today",
                f.disconnections_sent_today,
            ),
            url=_disconnections_url(request, u, {"sent_at__gte": _instant(f.midnight)}),
            note=_("since %(midnight)s") % {"midnight": moment_text(f.midnight, u.zone)},
        ),
        Card(
            key="topups_pending",
            number=_count(f.topups_pending),
            label=ngettext(
                "top-up waiting for payment", "top-ups waiting for payment", f.topups_pending
            ),
            url=changelist_url(
                request, TopUp, {"status__exact": TopUp.Status.PENDING, **by_account}
            ),
        ),
        Card(
            key="topups_failed_today",
            number=_count(f.topups_failed_today),
            label=ngettext("top-up failed today", "top-ups failed today", f.topups_failed_today),
            url=changelist_url(
                request,
                TopUp,
                {
                    "status__exact": TopUp.Status.FAILED,
                    "created_at__gte": _instant(f.midnight),
                    **by_account,
                },
            ),
            note=_("since %(midnight)s") % {"midnight": moment_text(f.midnight, u.zone)},
            alert=f.topups_failed_today > 0,
        ),
        Card(
            key="requests_overdue",
            number=_count(f.requests_overdue),
            label=ngettext(
                "service request past its deadline",
                "service requests past their deadline",
                f.requests_overdue,
            ),
            url=changelist_url(request, ServiceRequest, {"overdue": "yes", **own}),
            alert=f.requests_overdue > 0,
        ),
        Card(
            key="requests_due_soon",
            number=_count(f.requests_due_soon),
            label=ngettext(
                "service request due within 24 h",
                "service requests due within 24 h",
                f.requests_due_soon,
            ),
            url=changelist_url(
                request,
                ServiceRequest,
                {
                    "status__in": ",".join(ServiceRequest.OPEN),
                    "deadline_at__gt": _instant(f.now),
                    "deadline_at__lte": _instant(f.deadline_until),
                    **own,
                },
            ),
        ),
        Card(
            key="compensations_due",
            number=_count(f.compensations_due),
            label=ngettext("compensation due", "compensations due", f.compensations_due),
            url=changelist_url(
                request, Compensation, {"status__exact": Compensation.Status.PENDING, **own}
            ),
            note=_("%(amount)s not yet credited")
            % {"amount": money_text(f.compensations_due_amount, **money)},
        ),
        Card(
            key="meters_not_reporting",
            number=_count(f.meters_not_reporting),
            label=ngettext("meter not reporting", "meters not reporting", f.meters_not_reporting),
            url=changelist_url(request, Meter, {"reporting": "no", **own}),
            note=ngettext(
                "no reading for over %(hours)s hour",
                "no reading for over %(hours)s hours",
                reporting_hours,
            )
            % {"hours": reporting_hours},
            alert=f.meters_not_reporting > 0,
        ),
    ]
    expected = f.readings_expected
    share = f" ({f.readings_today / expected:.1%})" if expected else ""
    cards.append(
        Card(
            key="readings_today",
            number=_count(f.readings_today),
            label=ngettext("reading received today", "readings received today", f.readings_today),
            url=None,
            note=_(
                "of %(expected)s expected%(share)s: meters reporting × %(elapsed)s of today's %(total)s quarter-hours"
            )
            % {
                "expected": _count(expected),
                "share": share,
                "elapsed": f.quarter_hours_elapsed,
                "total": f.quarter_hours_today,
            },
            links=[
                Link(
                    ngettext(
                        "%(count)s meter reporting",
                        "%(count)s meters reporting",
                        f.meters_reporting,
                    )
                    % {"count": _count(f.meters_reporting)},
                    changelist_url(request, Meter, {"reporting": "yes", **own}),
                ),
                Link(
                    ngettext(
                        "%(count)s ingest batch today",
                        "%(count)s ingest batches today",
                        f.batches_today,
                    )
                    % {"count": _count(f.batches_today)},
                    changelist_url(
                        request, IngestBatch, {"received_at__gte": _instant(f.midnight), **own}
                    ),
                ),
            ],
        )
    )
    return cards


def channel_rows(
    request, utility: Utility, totals: list[selectors.ChannelTotal], since: datetime
) -> list[ChannelRow]:
    labels = dict(TopUp.Channel.choices)
    return [
        ChannelRow(
            label=labels.get(t.channel, t.channel),
            count=t.count,
            amount=money_text(
                t.amount, currency=utility.currency, minor_unit=utility.currency_minor_unit
            ),
            url=changelist_url(
                request,
                TopUp,
                {
                    "status__exact": TopUp.Status.SUCCEEDED,
                    "purpose__exact": TopUp.Purpose.BALANCE,
                    "channel__exact": t.channel,
                    "paid_at__gte": _instant(since),
                    "account__utility__id__exact": utility.pk,
                },
            ),
        )
        for t in totals
    ]


def dashboard_context(request, *, now: datetime | None = None) -> dict:
    """What the index template shows above the app list: a chooser when the staff member has
    several utilities, and a section per utility shown."""
    now = (now or timezone.now()).replace(microsecond=0)
    allowed = staff_utility_ids(request.user)
    utilities = Utility.objects.order_by("name", "pk").only("pk", "name", "code")
    if allowed is not None:
        utilities = utilities.filter(pk__in=allowed)
    utilities = list(utilities)
    if not utilities:
        return {"dashboard": {"sections": [], "choices": [], "member_of_none": True}}
    ids = [u.pk for u in utilities]
    chosen = request.GET.get("utility", "")
    # isdigit() would let "²" through to int(), a 500; an id is ASCII digits.
    if chosen.isascii() and chosen.isdecimal() and int(chosen) in ids:
        shown = [int(chosen)]
    elif chosen == "all" or len(ids) <= SECTIONS_AT_ONCE:
        shown = ids
    else:
        shown = ids[:1]
    choices = []
    if len(ids) > 1:
        choices.append({"label": _("All"), "query": "?utility=all", "current": len(shown) > 1})
        choices += [
            {"label": u.name, "query": f"?utility={u.pk}", "current": shown == [u.pk]}
            for u in utilities
        ]
    channels = selectors.topups_by_channel(utility_ids=shown, now=now)
    sections = []
    for figures in selectors.dashboard_figures(utility_ids=shown, now=now):
        utility = figures.utility
        since, totals = channels[utility.pk]
        sections.append(
            Section(
                utility=utility,
                as_of=moment_text(now, utility.zone),
                cards=figure_cards(request, figures),
                load_chart=load_chart(figures),
                topup_chart=topup_chart(utility, totals, selectors.TOPUP_DAYS),
                channels=channel_rows(request, utility, totals, since),
                topups_since=moment_text(since, utility.zone),
            )
        )
    return {"dashboard": {"sections": sections, "choices": choices, "member_of_none": False}}
