"""The tamper work queue's rows as the head-end makes them: events posted over HTTP with the
utility's service token, and Egypt's postpaid household whose meter may be removed on such
grounds (its late path on)."""

from __future__ import annotations

import itertools
from datetime import datetime

from accounts.models import Utility
from meters.models import Meter
from tests.accounts.factories import UtilityFactory
from tests.billing.factories import policy
from tests.meters.factories import EGYPT, MeterFactory, head_end_token

EVENTS_URL = "/api/v1/headend/events/"
_ids = itertools.count(1)


def egypt_late_path() -> Utility:
    """Egypt's utility with its late path on (BillingPolicy.removal_months_late): meters are
    removed on tamper and bypass grounds there."""
    utility = UtilityFactory(**EGYPT, name="North Cairo Electricity")
    policy(utility, removal_months_late=2, removal_notice_days=30)
    return utility


def postpaid_meter(utility: Utility, **kwargs) -> Meter:
    return MeterFactory(utility=utility, payment_mode=Meter.PaymentMode.POSTPAID, **kwargs)


def event(meter: Meter, kind: str, at: datetime, **extra) -> dict:
    """One event as the head-end sends it, with its own id."""
    return {
        "meter": meter.serial,
        "kind": kind,
        "occurred_at": at.isoformat(),
        "id": f"hes-{next(_ids)}",
        **extra,
    }


def events_post(make_api, utility: Utility, events: list[dict]):
    """POST the batch as the utility's head-end does; returns the response."""
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(utility)}")
    return api.post(EVENTS_URL, {"events": events})
