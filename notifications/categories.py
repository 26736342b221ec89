"""The kinds of alert we send, and how each travels.

Urgent categories cannot be turned off, ignore quiet hours, go out at high priority and fall back to
SMS when a user has no working device. The others wait for quiet hours to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.errors import DomainError


@dataclass(frozen=True)
class Category:
    code: str
    urgent: bool
    # How long FCM and APNs keep trying an offline phone: past this the news is stale.
    ttl: timedelta
    description: str


LOW_BALANCE = "low_balance"
BALANCE_DAYS_LEFT = "balance_days_left"
ZERO_BALANCE = "zero_balance"
DISCONNECTION_PENDING = "disconnection_pending"
OUTAGE_PLANNED = "outage_planned"
OUTAGE_UNPLANNED = "outage_unplanned"
OUTAGE_RESTORED = "outage_restored"
TOPUP_RECEIVED = "topup_received"
OUTAGE_REMINDER = "outage_reminder"
OUTAGE_RESCHEDULED = "outage_rescheduled"
OUTAGE_CANCELLED = "outage_cancelled"
OUTAGE_UNPLANNED_ETA = "outage_unplanned_eta"
COMPENSATION_CREDITED = "compensation_credited"
SERVICE_REQUEST_UPDATE = "service_request_update"
LINK_ENDED = "link_ended"
ACCOUNT_CLOSED = "account_closed"
MOVED_OUT = "moved_out"
BILL_ISSUED = "bill_issued"
BILL_DUE_SOON = "bill_due_soon"
BILL_FINED = "bill_fined"
REMOVAL_NOTICE = "removal_notice"
REMOVAL_CONFIRMED = "removal_confirmed"
AUTO_TOPUP_FAILED = "auto_topup_failed"
AUTO_TOPUP_CAP_REACHED = "auto_topup_cap_reached"
SHARE_INVITATION = "share_invitation"
SHARE_ENDED = "share_ended"
EMERGENCY_CREDIT_DUE = "emergency_credit_due"
HIGH_USAGE = "high_usage"
SANCTIONED_LOAD_EXCEEDED = "sanctioned_load_exceeded"

CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in [
        Category(LOW_BALANCE, False, timedelta(hours=12), "Balance fell below your alert level"),
        Category(BALANCE_DAYS_LEFT, False, timedelta(hours=12), "About N days of balance left"),
        Category(ZERO_BALANCE, True, timedelta(hours=6), "Balance has run out"),
        Category(
            DISCONNECTION_PENDING, True, timedelta(hours=6), "Supply will be disconnected soon"
        ),
        Category(OUTAGE_PLANNED, False, timedelta(hours=24), "Planned power cut notice"),
        Category(OUTAGE_UNPLANNED, True, timedelta(hours=2), "Power outage in your area"),
        Category(OUTAGE_RESTORED, False, timedelta(hours=6), "Power is back"),
        Category(TOPUP_RECEIVED, False, timedelta(hours=24), "Top-up received"),
        Category(OUTAGE_REMINDER, False, timedelta(hours=12), "Reminder of a planned power cut"),
        Category(OUTAGE_RESCHEDULED, False, timedelta(hours=24), "Planned power cut moved"),
        Category(OUTAGE_CANCELLED, False, timedelta(hours=24), "Planned power cut cancelled"),
        Category(
            OUTAGE_UNPLANNED_ETA,
            True,
            timedelta(hours=2),
            "Power outage, with when it is expected back",
        ),
        Category(
            COMPENSATION_CREDITED,
            False,
            timedelta(days=3),
            "Compensation for a missed service standard",
        ),
        Category(
            SERVICE_REQUEST_UPDATE,
            False,
            timedelta(days=3),
            "A service request or complaint changed status",
        ),
        Category(
            LINK_ENDED,
            False,
            timedelta(days=3),
            "An account link ended: its registered mobile changed",
        ),
        Category(ACCOUNT_CLOSED, False, timedelta(days=3), "An account was closed"),
        Category(MOVED_OUT, False, timedelta(days=3), "Final statement on moving out"),
        Category(BILL_ISSUED, False, timedelta(days=3), "A new postpaid bill"),
        Category(BILL_DUE_SOON, False, timedelta(hours=24), "A bill is due in a few days"),
        Category(BILL_FINED, False, timedelta(days=3), "A late payment fine was added to a bill"),
        # Egypt's late path: the consumer must hear of these even without the app (SMS).
        Category(
            REMOVAL_NOTICE,
            True,
            timedelta(days=3),
            "Formal notice: the meter will be removed unless the arrears are paid",
        ),
        Category(
            REMOVAL_CONFIRMED, True, timedelta(days=3), "The meter was removed; contract ended"
        ),
        Category(
            AUTO_TOPUP_FAILED,
            False,
            timedelta(hours=24),
            "An automatic top-up could not be charged to the saved card",
        ),
        Category(
            AUTO_TOPUP_CAP_REACHED,
            False,
            timedelta(hours=24),
            "An automatic top-up was skipped: this month's cap is reached",
        ),
        Category(SHARE_INVITATION, False, timedelta(days=3), "Someone shared an account with you"),
        Category(SHARE_ENDED, False, timedelta(days=3), "Your access to a shared account ended"),
        Category(
            EMERGENCY_CREDIT_DUE,
            False,
            timedelta(hours=24),
            "Emergency credit in use, and when it must be repaid",
        ),
        Category(
            HIGH_USAGE,
            False,
            timedelta(days=2),
            "Your use has run well above your usual for several days",
        ),
        Category(
            SANCTIONED_LOAD_EXCEEDED,
            False,
            timedelta(days=2),
            "Your demand went above your sanctioned load",
        ),
    ]
}


def category_get(code: str, *, field: str = "category") -> Category:
    try:
        return CATEGORIES[code]
    except (KeyError, TypeError):
        raise DomainError.for_field(
            field, f"Unknown category {code!r}.", code="unknown_category"
        ) from None
