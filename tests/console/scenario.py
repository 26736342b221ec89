"""Two utilities with rows of every kind the dashboard counts, and the counts by hand.

Kuwait (UTC+3) and Egypt (Africa/Cairo) at NOW. Each row that should count is made once; each
near miss (an hour too late, a reconnect not a disconnect, a removed meter …) is made beside it,
so a figure that counts too much or too little is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import Permission

from accounts.models import Utility
from billing.models import RelayCommand, TopUp
from core.models import StaffMembership
from meters.models import IngestBatch, Meter, MeterDay
from meters.storage import EMPTY_QUALITY, slot_of
from outages.models import AffectedMeter, Compensation, Outage
from servicerequests.models import ServiceRequest
from servicerequests.seed import request_types_seed
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.browser import PASSWORD
from tests.meters.factories import EGYPT, MeterFactory
from tests.servicerequests.factories import ServiceRequestFactory

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # 12:00 in Kuwait, 11:00 in Cairo
HOUR = timedelta(hours=1)


@dataclass
class Expected:
    utility: Utility
    figures: dict[str, int] = field(default_factory=dict)
    meters: list[Meter] = field(default_factory=list)


def _meter(utility: Utility, **kwargs) -> Meter:
    defaults = {"last_reading_at": NOW - HOUR, "last_communication_at": NOW - HOUR}
    return MeterFactory(utility=utility, **{**defaults, **kwargs})


def _topup(account, status, *, channel="app", amount="5", created_at=NOW, paid_at=None) -> TopUp:
    return TopUp.objects.create(
        account=account,
        amount=Decimal(amount),
        currency=account.utility.currency,
        channel=channel,
        status=status,
        created_at=created_at,
        paid_at=paid_at,
    )


def _relay(meter, action, status, *, sent_at=None) -> RelayCommand:
    return RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action=action,
        reason="unpaid",
        status=status,
        not_before=NOW - HOUR,
        sent_at=sent_at,
    )


def _outage(utility, status, start, *, meters=()) -> Outage:
    outage = Outage.objects.create(
        utility=utility,
        reason="Maintenance",
        status=status,
        planned_start=start,
        planned_end=start + 4 * HOUR,
    )
    for meter in meters:
        AffectedMeter.objects.create(outage=outage, meter=meter, account=meter.account)
    return outage


def _compensation(account, status, amount) -> Compensation:
    return Compensation.objects.create(
        utility=account.utility,
        account=account,
        standard="restoration",
        event_key=f"outage:{account.pk}-{status}-{amount}",
        amount=Decimal(amount),
        currency=account.utility.currency,
        reason="Supply restored late",
        failure_at=NOW - 24 * HOUR,
        exemption_deadline=NOW + 24 * HOUR,
        pay_by=NOW + 30 * 24 * HOUR,
        status=status,
    )


def day_readings(meter: Meter, day: date, slots: dict[int, int]) -> None:
    """Store actual readings of one UTC day: {slot: Wh}."""
    from array import array

    values = array("i", [0] * 96)
    quality = bytearray(EMPTY_QUALITY)
    for slot, wh in slots.items():
        values[slot], quality[slot] = wh, 1
    MeterDay.objects.update_or_create(
        meter=meter,
        day=day,
        defaults={"values": values.tobytes(), "quality": bytes(quality), "updated_at": NOW},
    )


def utility_rows(utility: Utility, *, scale: int) -> Expected:
    """Rows of one utility; `scale` (1 or 2) makes the two utilities' counts differ."""
    request_types_seed(utility=utility)
    zone = utility.zone
    midnight = datetime.combine(NOW.astimezone(zone).date(), datetime.min.time(), zone)
    expected = Expected(utility=utility)
    reporting = [_meter(utility) for _ in range(3 * scale)]
    silent = _meter(utility, last_reading_at=NOW - 30 * HOUR)
    _meter(utility, last_reading_at=None, last_communication_at=None)  # never reported
    _meter(utility, last_reading_at=NOW - 30 * HOUR, status=Meter.Status.REMOVED)
    _meter(utility, last_reading_at=None, installed_at=NOW - HOUR)  # new: neither
    expected.meters = reporting
    expected.figures["meters_not_reporting"] = 2
    expected.figures["meters_reporting"] = 3 * scale
    a, b, c = reporting[0], reporting[1], reporting[2]

    _outage(utility, Outage.Status.IN_PROGRESS, NOW - HOUR, meters=[a, b])
    for _ in range(scale):
        _outage(utility, Outage.Status.PUBLISHED, NOW + 20 * HOUR, meters=[b, c])
    _outage(utility, Outage.Status.PUBLISHED, NOW + 50 * HOUR, meters=[a])  # beyond 48 h
    _outage(utility, Outage.Status.DRAFT, NOW + 2 * HOUR)
    _outage(utility, Outage.Status.RESTORED, NOW - 30 * HOUR)
    expected.figures |= {
        "outages_in_progress": 1,
        "outages_in_progress_accounts": 2,
        "outages_coming": scale,
        "outages_coming_accounts": 2,
    }

    disconnect, reconnect = RelayCommand.Action.DISCONNECT, RelayCommand.Action.RECONNECT
    for meter in reporting[:scale]:
        _relay(meter, disconnect, RelayCommand.Status.WAITING)
    _relay(silent, reconnect, RelayCommand.Status.WAITING)
    _relay(c, disconnect, RelayCommand.Status.DONE, sent_at=midnight + 10 * timedelta(minutes=1))
    _relay(c, disconnect, RelayCommand.Status.DONE, sent_at=midnight - timedelta(minutes=1))
    expected.figures |= {"disconnections_waiting": scale, "disconnections_sent_today": 1}

    account = a.account
    for _ in range(2 * scale):
        _topup(account, TopUp.Status.PENDING)
    _topup(account, TopUp.Status.FAILED, created_at=midnight + timedelta(minutes=5))
    _topup(account, TopUp.Status.FAILED, created_at=midnight - timedelta(minutes=5))
    _topup(account, TopUp.Status.SUCCEEDED, channel="app", amount="10", paid_at=NOW - HOUR)
    _topup(account, TopUp.Status.SUCCEEDED, channel="app", amount="2.5", paid_at=NOW - 48 * HOUR)
    _topup(account, TopUp.Status.SUCCEEDED, channel="counter", amount="7", paid_at=NOW - HOUR)
    _topup(account, TopUp.Status.SUCCEEDED, channel="web", amount="9", paid_at=NOW - 40 * 24 * HOUR)
    expected.figures |= {"topups_pending": 2 * scale, "topups_failed_today": 1}

    open_ = ServiceRequest.Status.UNDER_REVIEW
    for _ in range(scale):
        ServiceRequestFactory(account=account, status=open_, deadline_at=NOW - HOUR)
    ServiceRequestFactory(account=account, status=open_, deadline_at=NOW + 10 * HOUR)
    ServiceRequestFactory(account=account, status=open_, deadline_at=NOW + 30 * HOUR)
    ServiceRequestFactory(
        account=account, status=ServiceRequest.Status.COMPLETED, deadline_at=NOW - HOUR
    )
    expected.figures |= {"requests_overdue": scale, "requests_due_soon": 1}

    _compensation(a.account, Compensation.Status.PENDING, "200")
    _compensation(b.account, Compensation.Status.PENDING, "50")
    _compensation(c.account, Compensation.Status.CREDITED, "100")
    expected.figures["compensations_due"] = 2

    IngestBatch.objects.create(utility=utility, source="json", received_at=midnight + HOUR)
    IngestBatch.objects.create(utility=utility, source="json", received_at=midnight - HOUR)
    expected.figures["batches_today"] = 1

    # Today's readings: the first 4 quarter-hours of the local day, 100 Wh each, for every
    # reporting meter; and 50 Wh in the quarter-hour before midnight (yesterday's).
    for meter in reporting:
        by_day: dict[date, dict[int, int]] = {}
        for n in range(-1, 4):
            day, slot = slot_of(midnight + n * timedelta(minutes=15))
            by_day.setdefault(day, {})[slot] = 50 if n < 0 else 100
        for day, slots in by_day.items():
            day_readings(meter, day, slots)
    expected.figures["readings_today"] = 4 * len(reporting)
    return expected


def two_utilities() -> tuple[Expected, Expected]:
    kuwait = UtilityFactory(name="Kuwait MEW")
    egypt = UtilityFactory(**EGYPT, name="North Egypt Distribution")
    return utility_rows(kuwait, scale=1), utility_rows(egypt, scale=2)


def staff_of(utility: Utility, username: str = "dashboard-staff"):
    """A staff member of `utility` who may look at every list (the dashboard's links open)."""
    user = UserFactory(username=username, phone=None, is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    StaffMembership.objects.create(user=user, utility=utility, role="support")
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    return user
