"""The meter's own relay events confirm the commands the head-end accepted, and the 2-hour
reconnection standard (DOMAIN.md §3: 100 SAR, plus 100 per further hour or part of one) ends at
the meter's relay-closed confirmation, not at the head-end's acceptance (issue 17). The head-end
sends the events over HTTP; Saudi Electricity, clock pinned."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing import relay
from billing.ledger import ledger_post
from billing.models import LedgerEntry, RelayCommand, TopUp
from billing.payments import topup_confirm
from meters.models import Meter
from outages import standards
from outages.models import Compensation, Standard
from tests.billing.relay_support import relay_beat_at
from tests.meters.factories import MeterFactory, head_end_token
from tests.outages.factories import saudi

pytestmark = pytest.mark.django_db
RIYADH = ZoneInfo("Asia/Riyadh")
URL = "/api/v1/headend/events/"


def riyadh(hour, minute=0, second=0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, second, tzinfo=RIYADH)  # a Tuesday


@pytest.fixture
def meter(head_end):
    """Disconnected for debt at 09:00; pays at 10:00; its reconnect waits for the relay beat."""
    meter = MeterFactory(utility=saudi(), serial="SAM0000009")
    with time_machine.travel(riyadh(9), tick=False):
        ledger_post(
            account=meter.account,
            kind="energy_charge",
            amount=Decimal("-5.00"),
            key="energy",
            description="energy",
        )
        [command] = relay.disconnect_evaluate(account=meter.account)
        assert relay.relay_dispatch(command_id=str(command.pk)).status == "done"
    with time_machine.travel(riyadh(10), tick=False):
        topup = TopUp.objects.create(
            account=meter.account, amount=Decimal("50.00"), currency="SAR", channel="app"
        )
        topup_confirm(topup=topup)
    return meter


@pytest.fixture
def hes(make_api, meter):
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    return api


def send(hes, *events, at):
    """The head-end posts the meter's events at `at`."""
    body = {
        "events": [
            {
                "meter": "SAM0000009",
                "kind": kind,
                "occurred_at": when.isoformat(),
                "id": f"{kind}-{when:%H%M%S}",
            }
            for kind, when in events
        ]
    }
    with time_machine.travel(at, tick=False):
        response = hes.post(URL, data=body)
    assert response.status_code == 200, response.json()
    return response.json()


def accepted_at(moment, capture):
    """The relay beat at `moment` sends the waiting reconnect; the head-end accepts it."""
    relay_beat_at(moment, capture)
    reconnect = RelayCommand.objects.get(action="reconnect")
    assert (reconnect.status, reconnect.completed_at) == ("done", moment)
    return reconnect


def owed():
    return list(Compensation.objects.filter(standard=Standard.RECONNECTION))


def test_a_relay_closed_at_13_10_makes_a_reconnection_accepted_at_10_30_late(
    meter, hes, django_capture_on_commit_callbacks
):
    reconnect = accepted_at(riyadh(10, 30), django_capture_on_commit_callbacks)
    standards.reconnections_evaluate(now=riyadh(10, 45))
    assert owed() == []  # on time by the head-end's acceptance

    result = send(hes, ("relay_closed", riyadh(13, 10)), at=riyadh(13, 11))

    assert (result["stored"], result["rejected"]) == (1, 0)
    reconnect.refresh_from_db()
    assert reconnect.confirmed_at == riyadh(13, 10)
    [compensation] = owed()
    assert compensation.relay_command == reconnect
    assert compensation.amount == Decimal("300.00")  # 3 h 10 min: 100 + 2 started hours × 100
    assert compensation.details["measured_to"] == "relay_confirmed"
    assert compensation.details["reconnected_at"] == "2026-12-01T13:10:00+03:00"
    assert "relay closed at 2026-12-01 13:10 +03" in compensation.reason
    # The beat evaluating it again measures to the confirmation too.
    assert standards.reconnections_evaluate(now=riyadh(14)) == 1
    assert [c.amount for c in owed()] == [Decimal("300.00")]


def test_a_confirmation_at_11_owes_nothing(meter, hes, django_capture_on_commit_callbacks):
    reconnect = accepted_at(riyadh(10, 30), django_capture_on_commit_callbacks)

    send(hes, ("relay_closed", riyadh(11)), at=riyadh(11, 1))
    standards.reconnections_evaluate(now=riyadh(12))

    reconnect.refresh_from_db()
    assert reconnect.confirmed_at == riyadh(11)
    assert owed() == []
    assert Meter.objects.get(pk=meter.pk).relay == Meter.Relay.CLOSED


def test_a_late_confirmation_corrects_a_paid_compensation_by_the_difference_once(
    meter, hes, django_capture_on_commit_callbacks
):
    accepted_at(riyadh(12, 30), django_capture_on_commit_callbacks)
    standards.reconnections_evaluate(now=riyadh(12, 45))
    [compensation] = owed()
    assert compensation.amount == Decimal("200.00")  # 2 h 30 by the acceptance
    with time_machine.travel(compensation.exemption_deadline, tick=False):
        standards.compensations_pay_due(now=compensation.exemption_deadline)

    send(hes, ("relay_closed", riyadh(13, 10)), at=riyadh(13, 11))
    # The same event again, and the meter reporting its relay closed once more later on.
    send(hes, ("relay_closed", riyadh(13, 10)), at=riyadh(13, 12))
    send(hes, ("relay_closed", riyadh(13, 20)), at=riyadh(13, 21))
    standards.reconnections_evaluate(now=riyadh(14))

    [compensation] = owed()
    assert (compensation.amount, compensation.status) == (Decimal("300.00"), "credited")
    ledger = LedgerEntry.objects.filter(account=meter.account, kind="compensation").order_by("id")
    assert [entry.amount for entry in ledger] == [Decimal("200"), Decimal("100")]
    assert RelayCommand.objects.get(action="reconnect").confirmed_at == riyadh(13, 10)


def test_relay_open_confirms_the_disconnect_and_an_older_event_does_not_undo_a_newer_one(
    meter, hes, django_capture_on_commit_callbacks
):
    reconnect = accepted_at(riyadh(10, 30), django_capture_on_commit_callbacks)
    send(hes, ("relay_closed", riyadh(10, 31)), at=riyadh(10, 32))

    # The disconnect's own confirmation arrives late, after the reconnection's.
    send(hes, ("relay_open", riyadh(9, 0, 20)), at=riyadh(10, 40))

    disconnect = RelayCommand.objects.get(action="disconnect")
    reconnect.refresh_from_db()
    assert disconnect.confirmed_at == riyadh(9, 0, 20)
    assert reconnect.confirmed_at == riyadh(10, 31)
    assert Meter.objects.get(pk=meter.pk).relay == Meter.Relay.CLOSED


def test_a_relay_event_before_any_reconnect_went_out_confirms_nothing(meter, hes):
    send(hes, ("relay_closed", riyadh(9, 30)), at=riyadh(10, 5))  # closed by hand, say

    assert RelayCommand.objects.get(action="reconnect").confirmed_at is None  # still waiting
    assert RelayCommand.objects.get(action="disconnect").confirmed_at is None
    assert Meter.objects.get(pk=meter.pk).relay == Meter.Relay.CLOSED
    assert owed() == []
