"""The reads behind a consumer account's page in the console: what staff answering a call need, each
bounded (the last N) and each through an index that starts with the account (or its holders).

The page draws on every domain app (billing, meters, notifications, service requests,
compensation), which is why it lives in the console, above them. Reads those apps' selectors
already give are used as they are (balance_summary, statement, meter_days); the rest are small
bounded reads written here, next to their one caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import AccountLink, ConsumerAccount
from billing.models import AutoTopUp, EmergencyCredit
from billing.selectors import balance_summary, statement
from core.charts import bar_chart
from core.money import utility_money
from core.phone import phone_mask
from core.timebuckets import local_date_bounds, moment_text
from meters.models import Meter, MeterAssignment
from meters.selectors import meter_days
from meters.storage import PRESENT, Series, floor_to_interval
from notifications.models import Notification
from outages.models import Compensation
from servicerequests.models import ServiceRequest

RECENT = 20  # rows in each list of the page
MAX_METERS = 20  # an account with more shows the first ones by serial, and says so
CHART_DAYS = 14  # local days of the usage chart, today included


def money(amount: Decimal | str | None, account: ConsumerAccount) -> str:
    return "—" if amount is None else utility_money(amount, account.utility)


def when(moment: datetime | None, account: ConsumerAccount) -> str:
    return moment_text(moment, account.utility.zone)


def balance_panel(*, account: ConsumerAccount, now: datetime) -> dict:
    """billing.selectors.balance_summary as staff read it: prepaid balance and days left, or a
    postpaid household's amount due."""
    summary = balance_summary(account=account, now=now)
    last = summary.get("last_topup") or summary.get("last_payment")
    days_left = summary.get("projected_days_left")
    return {
        **summary,
        "prepaid": summary["payment_mode"] == "prepaid",
        # The plural follows the figure shown (1.0 day, 2.5 days).
        "days_count": 1 if days_left is not None and Decimal(days_left) == 1 else 2,
        "has_debt": Decimal(summary.get("debt") or 0) > 0,
        "has_overdue": Decimal(summary.get("overdue") or 0) > 0,
        "last": None
        if last is None
        else {
            "amount": money(last["amount"], account),
            "at": when(last["at"], account),
            "channel": last["channel"],
        },
    }


@dataclass(frozen=True)
class MeterRow:
    serial: str
    payment_mode: str
    status: str
    relay: str
    relay_off: bool
    last_reading: str
    last_communication: str


def meters_panel(*, account: ConsumerAccount) -> tuple[list[MeterRow], bool]:
    """The account's meters now (index meters (account, status)), and whether there are more."""
    meters = list(Meter.objects.filter(account=account).order_by("serial")[: MAX_METERS + 1])
    rows = [
        MeterRow(
            serial=meter.serial,
            payment_mode=meter.get_payment_mode_display(),
            status=meter.get_status_display(),
            relay=meter.get_relay_display(),
            relay_off=meter.relay != Meter.Relay.CLOSED,
            last_reading=when(meter.last_reading_at, account),
            last_communication=when(meter.last_communication_at, account),
        )
        for meter in meters[:MAX_METERS]
    ]
    return rows, len(meters) > MAX_METERS


def usage_chart(*, account: ConsumerAccount, now: datetime, days: int = CHART_DAYS) -> dict:
    """kWh used on each of the last `days` local days (today so far included), summed over the
    meters the account held on those days and only for the time it held them (a meter's previous
    tenant's use is not this account's). One read of stored days per meter (meters.selectors)."""
    zone = account.utility.zone
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    edges = local_date_bounds(first, today + timedelta(days=1), zone)
    start, end = edges[0], floor_to_interval(min(edges[-1], now))
    tenancies = list(
        MeterAssignment.objects.filter(account=account, start__lt=end)
        .filter(Q(end__isnull=True) | Q(end__gt=start))
        .order_by("meter_id", "start")[:MAX_METERS]
    )
    windows: dict[int, list] = {}
    for tenancy in tenancies:
        windows.setdefault(tenancy.meter_id, []).append((tenancy.start, tenancy.end))
    wh: list[int | None] = [None] * days
    if end > start:
        for meter_id, spans in windows.items():
            series = Series(start, end, meter_days(meter_id=meter_id, start=start, end=end))
            series.keep_only(spans)
            for n in range(days):
                i0 = series.index_of(edges[n])
                i1 = min(series.index_of(edges[n + 1]), len(series))
                present = [series.values[i] for i in range(i0, i1) if series.quality[i] in PRESENT]
                if present:
                    wh[n] = (wh[n] or 0) + sum(present)
    kwh = [None if v is None else (Decimal(v) / 1000).quantize(Decimal("0.001")) for v in wh]
    labels = [f"{first + timedelta(days=n):%a %d}" for n in range(days)]
    caption = f"kWh per local day ({account.utility.timezone}), {first:%d %b} – {today:%d %b %Y}"
    total = sum((v for v in kwh if v is not None), Decimal(0))
    return {
        "svg": bar_chart(
            title=caption,
            unit="kWh",
            labels=labels,
            values=[None if v is None else float(v) for v in kwh],
            value_labels=["" if v is None else f"{v:f}" for v in kwh],
            # Today so far is drawn lighter: its day has not ended.
            partial=[n == days - 1 for n in range(days)],
            width=720,
        ),
        "total": f"{total:f}",
        "days_without": sum(1 for v in kwh if v is None),
    }


def ledger_panel(*, account: ConsumerAccount) -> list[dict]:
    """The last entries of the ledger (billing.selectors.statement, newest first)."""
    entries = statement(account=account).select_related("created_by")[:RECENT]
    return [
        {
            "at": when(entry.created_at, account),
            "kind": entry.get_kind_display(),
            "description": entry.description,
            "amount": money(entry.amount, account),
            "credit": entry.amount > 0,
            "balance_after": money(entry.balance_after, account),
            "by": entry.created_by.get_username() if entry.created_by else "",
        }
        for entry in entries
    ]


def links_panel(*, account: ConsumerAccount) -> list[dict]:
    """Who holds (or held) the account in the app, newest first, their mobiles masked: staff
    confirm a caller's number by asking for it, never by reading it out."""
    links = (
        AccountLink.objects.filter(account=account)
        .select_related("user")
        .order_by("-created_at", "-id")[:RECENT]
    )
    return [
        {
            "mobile": phone_mask(link.verified_mobile),
            "language": link.user.get_language_display(),
            "since": when(link.created_at, account),
            "ended": when(link.unlinked_at, account) if link.unlinked_at else "",
            "end_reason": link.get_end_reason_display() if link.end_reason else "",
            "live": link.unlinked_at is None,
            # A holder may do everything; a share what the holder granted (accounts.shares).
            "role": link.get_role_display()
            if link.role == AccountLink.Role.HOLDER
            else ", ".join(
                right
                for right, granted in (
                    (_("sees it"), link.can_view),
                    (_("pays"), link.can_pay),
                    (_("gets alerts"), link.receives_alerts),
                )
                if granted
            ),
            "shared": link.role == AccountLink.Role.SHARED,
        }
        for link in links
    ]


def affordability_panel(*, account: ConsumerAccount) -> dict:
    """What the consumer set to keep the supply on (docs/affordability.md): automatic top-ups in
    force and emergency credit in use, as staff answering a call need them."""
    rules = AutoTopUp.objects.filter(account=account, is_active=True).order_by("trigger")
    credit = EmergencyCredit.objects.filter(
        account=account, status=EmergencyCredit.Status.ACTIVE
    ).first()
    return {
        "auto_topups": [
            {
                "trigger": rule.get_trigger_display(),
                "amount": money(rule.amount, account),
                "threshold": money(rule.threshold, account) if rule.threshold is not None else "",
                "next_run": when(rule.next_run_at, account) if rule.next_run_at else "",
                "cap": money(rule.monthly_cap, account),
            }
            for rule in rules
        ],
        "emergency_credit": None
        if credit is None
        else {
            "amount": money(credit.amount, account),
            "taken": when(credit.taken_at, account),
            "repay_by": when(credit.repay_by, account) if credit.repay_by else "",
        },
    }


def notifications_panel(*, account: ConsumerAccount) -> list[dict]:
    """The last alerts sent to the account's holders while they held it, about this utility
    (index notifications (user, -created_at), one range per holder)."""
    holders = list(
        AccountLink.objects.filter(account=account)
        .order_by("-created_at")
        .values_list("user_id", "created_at", "unlinked_at")[:RECENT]
    )
    if not holders:
        return []
    held = Q()
    for user_id, since, until in holders:
        period = Q(user_id=user_id, created_at__gte=since)
        if until is not None:
            period &= Q(created_at__lte=until)
        held |= period
    alerts = Notification.objects.filter(held, utility_id=account.utility_id).order_by(
        "-created_at", "-id"
    )[:RECENT]
    rows = []
    for alert in alerts:
        channels = [("Push", alert.get_push_status_display())]
        if alert.sms_status:
            channels.append(("SMS", alert.get_sms_status_display()))
        rows.append(
            {
                "at": when(alert.created_at, account),
                "category": alert.category.replace("_", " ").capitalize(),
                "title": alert.title,
                "channels": channels,
                "read": when(alert.read_at, account) if alert.read_at else "",
            }
        )
    return rows


def requests_panel(*, account: ConsumerAccount, now: datetime) -> list[dict]:
    """Open service requests, the nearest deadline first (index requests (account, -created_at))."""
    requests = (
        ServiceRequest.objects.filter(account=account, status__in=ServiceRequest.OPEN)
        .select_related("type")
        .order_by("deadline_at", "created_at")[:RECENT]
    )
    return [
        {
            "pk": request.pk,
            "type": request.type.name_en,
            "status": request.get_status_display(),
            "opened": when(request.created_at, account),
            "deadline": when(request.deadline_at, account) if request.deadline_at else "",
            "overdue": request.is_overdue(now),
        }
        for request in requests
    ]


def compensation_panel(*, account: ConsumerAccount) -> dict:
    """Compensation owed to the account (pending) and paid (credited), and the last ones
    (index compensations (account, standard, event_key))."""
    own = Compensation.objects.filter(account=account)
    totals = own.aggregate(
        due=Sum("amount", filter=Q(status=Compensation.Status.PENDING)),
        paid=Sum("amount", filter=Q(status=Compensation.Status.CREDITED)),
    )
    rows = [
        {
            "standard": item.get_standard_display(),
            "amount": money(item.amount, account),
            "status": item.get_status_display(),
            "failure": when(item.failure_at, account),
            "pay_by": when(item.pay_by, account),
        }
        for item in own.order_by("-failure_at", "-id")[:RECENT]
    ]
    return {
        "due": money(totals["due"] or 0, account),
        "paid": money(totals["paid"] or 0, account),
        "rows": rows,
    }


def account_page(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """Every panel of the page, for an account loaded with its utility."""
    now = now or timezone.now()
    meters, more_meters = meters_panel(account=account)
    return {
        "now": when(now, account),
        "registered_mobile": phone_mask(account.registered_mobile),
        "balance": balance_panel(account=account, now=now),
        "meters": meters,
        "more_meters": more_meters,
        "usage": usage_chart(account=account, now=now),
        "ledger": ledger_panel(account=account),
        "links": links_panel(account=account),
        "affordability": affordability_panel(account=account),
        "notifications": notifications_panel(account=account),
        "requests": requests_panel(account=account, now=now),
        "compensation": compensation_panel(account=account),
    }
