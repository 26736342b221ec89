"""A new connection from request to compensation: the estimate is paid through the top-up flow,
the regulated clock runs in Saudi working days (skipping National Day), and finishing late pays
400 plus 20 per further working day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing.gateway import GATEWAYS
from billing.models import Balance, LedgerEntry, TopUp
from notifications.models import Notification
from outages.models import Compensation
from servicerequests import deadlines, services
from servicerequests.models import RequestType, ServiceRequest
from servicerequests.tasks import check_deadlines, sync_estimate_payments
from tests.servicerequests.factories import ServiceRequestFactory, consumer, saudi, support_staff

pytestmark = pytest.mark.django_db
RIYADH = ZoneInfo("Asia/Riyadh")
SIM = GATEWAYS["simulated"]
URL = "/api/v1/service-requests/"
CONNECTION = {"voltage": "low", "load_kw": "12", "premises_type": "residential", "plot_number": "9"}


def riyadh(*args) -> datetime:
    return datetime(*args, tzinfo=RIYADH)


def webhook(client, topup: TopUp):
    body = SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=True,
    )
    return client.post(
        "/api/v1/payments/webhooks/simulated/",
        data=body,
        content_type="application/json",
        HTTP_SIM_SIGNATURE=SIM.sign(body),
    )


def staff_step(client, request_id: int, step: str, data: dict):
    response = client.post(f"/admin/servicerequests/servicerequest/{request_id}/{step}/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return response


def test_a_connection_paid_then_finished_three_working_days_late_is_compensated(
    make_api, client, django_capture_on_commit_callbacks
):
    utility = saudi()
    user, account = consumer(utility)
    staff = support_staff(utility)
    client.force_login(staff)

    # Sunday 30 August 2026: the consumer asks for a low-voltage connection.
    with time_machine.travel(riyadh(2026, 8, 30, 9, 0), tick=False):
        api = make_api(user)
        created = api.post(
            URL, {"account": account.pk, "type": "new_connection", "details": CONNECTION}
        )
        assert created.status_code == 201, created.json()
        request_id = created.json()["id"]
        assert created.json()["deadline_at"] is None  # the clock starts at payment

        staff_step(
            client, request_id, "move", {"status": "under_review", "text": "Site visit booked."}
        )
        staff_step(client, request_id, "estimate", {"amount": "1500.00", "note": "Cable and meter"})
        detail = api.get(f"{URL}{request_id}/").json()
        assert detail["status"] == "estimate_issued"
        assert detail["estimate"]["amount"] == "1500.00" and detail["estimate"]["payable"]

    # Tuesday 1 September, 10:00 in Riyadh: the consumer pays through the gateway.
    paid_at = riyadh(2026, 9, 1, 10, 0)
    with time_machine.travel(paid_at, tick=False):
        api.as_user(user)
        started = api.post(f"{URL}{request_id}/estimate/pay/")
        assert started.status_code == 201, started.json()
        assert "/pay/simulated/" in started.json()["payment_url"]
        again = api.post(f"{URL}{request_id}/estimate/pay/")
        assert again.status_code == 200 and again.json()["topup_id"] == started.json()["topup_id"]
        topup = TopUp.objects.get()
        with django_capture_on_commit_callbacks(execute=True):
            assert webhook(client, topup).json() == {"status": "credited"}

    # The sync runs a little later; the clock still starts at the moment of payment.
    with time_machine.travel(riyadh(2026, 9, 1, 10, 1), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert sync_estimate_payments.delay().get() == 1
        api.as_user(user)
        detail = api.get(f"{URL}{request_id}/").json()
    assert detail["status"] == "paid"
    assert detail["clock_started_at"] == "2026-09-01T10:00:00+03:00"
    assert detail["deadline_working_days"] == 20
    # 20 working days (Sunday to Thursday) after Tuesday 1 September, skipping National Day
    # (Wednesday 23 September): the end of Wednesday 30 September. Without the holiday: the 29th.
    assert detail["deadline_at"] == "2026-10-01T00:00:00+03:00"
    # The money paid the estimate, not the prepaid balance: credited and debited, explainably.
    assert Balance.objects.get(account=account).amount == 0
    entries = list(LedgerEntry.objects.filter(account=account).values_list("kind", "amount", "key"))
    assert entries == [
        ("topup", Decimal("1500.000"), f"topup:{topup.pk}"),
        ("service_charge", Decimal("-1500.000"), f"estimate:{request_id}"),
    ]

    with time_machine.travel(riyadh(2026, 9, 2, 8, 0), tick=False):
        staff_step(client, request_id, "move", {"status": "in_progress", "text": "Crew assigned."})

    # Thursday 1 October, midday: the first working day past the deadline; the beat notices.
    with time_machine.travel(riyadh(2026, 10, 1, 12, 0), tick=False):
        assert check_deadlines.delay().get() == 1
        api.as_user(user)
        assert api.get(f"{URL}{request_id}/").json()["overdue"] is True
    compensation = Compensation.objects.get()
    assert compensation.amount == Decimal("420.00") and compensation.status == "pending"

    # Monday 5 October, 11:00: finished on the third working day past the deadline
    # (Thursday 1, Sunday 4, Monday 5; Friday and Saturday are the weekend).
    with time_machine.travel(riyadh(2026, 10, 5, 11, 0), tick=False):
        staff_step(client, request_id, "move", {"status": "completed", "text": "Connected."})

    compensation = Compensation.objects.get()
    assert compensation.amount == Decimal("460.00")  # 400 + 3 × 20
    assert (
        compensation.standard == "connection" and compensation.event_key == f"request:{request_id}"
    )
    assert compensation.account == account and compensation.status == "pending"
    assert compensation.failure_at == datetime(2026, 9, 30, 21, 0, tzinfo=UTC)
    assert compensation.details["late_working_days"] == 3

    statuses = [
        n.body.rsplit(": ", 1)[1]
        for n in Notification.objects.filter(user=user, category="service_request_update").order_by(
            "created_at", "id"
        )
    ]
    assert statuses == [
        "under review.",
        "cost estimate ready to pay.",
        "estimate paid.",
        "in progress.",
        "completed.",
    ]
    timeline = make_api(user).get(f"{URL}{request_id}/").json()["timeline"]
    assert [e["kind"] for e in timeline] == [
        "created",
        "status",
        "estimate",
        "status",
        "status",
        "status",
        "status",
    ]
    assert timeline[1]["text"] == "Site visit booked." and timeline[1]["by"] == "staff"


@pytest.fixture
def connection():
    """A low-voltage connection paid on Tuesday 1 September 2026 at 10:00 Riyadh, in progress."""
    utility = saudi()
    _, account = consumer(utility)
    request = ServiceRequestFactory(
        account=account,
        type=RequestType.objects.get(utility=utility, code="new_connection"),
        details=CONNECTION,
        status=ServiceRequest.Status.IN_PROGRESS,
    )
    deadlines.clock_start(request=request, at=riyadh(2026, 9, 1, 10, 0))
    return request


@pytest.mark.parametrize(
    ("finished", "amount"),
    [
        (riyadh(2026, 9, 30, 23, 59), None),  # the last minute of the 20th working day
        (riyadh(2026, 10, 1, 0, 30), Decimal("420.00")),  # part of a working day counts whole
        (riyadh(2026, 10, 3, 18, 0), Decimal("420.00")),  # Saturday: only Thursday was late
        (riyadh(2026, 10, 5, 11, 0), Decimal("460.00")),
    ],
)
def test_each_working_day_or_part_past_the_deadline_adds_twenty(connection, finished, amount):
    staff = support_staff(connection.utility)
    with time_machine.travel(finished, tick=False):
        services.request_transition(request_id=connection.pk, to_status="completed", actor=staff)

    rows = list(Compensation.objects.values_list("amount", flat=True))
    assert rows == ([amount] if amount else [])


def test_a_medium_voltage_connection_has_sixty_working_days(connection):
    connection.details = {**CONNECTION, "voltage": "medium"}
    deadlines.clock_start(request=connection, at=riyadh(2026, 9, 1, 10, 0))
    assert connection.deadline_working_days == 60


def test_compensation_already_credited_gets_the_rest_as_a_further_one(connection):
    staff = support_staff(connection.utility)
    with time_machine.travel(riyadh(2026, 10, 1, 12, 0), tick=False):
        deadlines.deadlines_check()
    Compensation.objects.update(status=Compensation.Status.CREDITED)  # the month ran out: paid

    with time_machine.travel(riyadh(2026, 10, 5, 11, 0), tick=False):
        services.request_transition(request_id=connection.pk, to_status="completed", actor=staff)

    rows = dict(Compensation.objects.values_list("event_key", "amount"))
    assert rows == {
        f"request:{connection.pk}": Decimal("420.00"),
        f"request:{connection.pk}:further": Decimal("40.00"),
    }


def test_a_utility_without_guaranteed_standards_owes_nothing(connection):
    from outages.models import StandardsPolicy

    StandardsPolicy.objects.filter(utility=connection.utility).delete()
    staff = support_staff(connection.utility)
    with time_machine.travel(riyadh(2026, 10, 5, 11, 0), tick=False):
        services.request_transition(request_id=connection.pk, to_status="completed", actor=staff)
    assert not Compensation.objects.exists()


def test_an_account_in_arrears_pays_its_estimate_online_and_its_arrears_are_untouched(make_api):
    """The estimate's money pays the estimate: no share of it repays the debt or unpaid bills."""
    from billing.models import LedgerEntry
    from billing.payments import topup_confirm
    from servicerequests.estimates import estimate_payment_settle

    utility = saudi()
    user, account = consumer(utility)
    request = ServiceRequestFactory(
        account=account,
        type=RequestType.objects.get(utility=utility, code="new_connection"),
        details=CONNECTION,
        status=ServiceRequest.Status.ESTIMATE_ISSUED,
        estimate_amount=Decimal("900.00"),
    )
    Balance.objects.create(account=account, amount=Decimal("5.00"), debt=Decimal("120.00"))

    response = make_api(user).post(f"{URL}{request.pk}/estimate/pay/")

    assert response.status_code == 201
    topup = TopUp.objects.get()
    assert topup.purpose == "estimate"
    topup_confirm(topup=topup)
    assert estimate_payment_settle(request_id=request.pk)
    balance = Balance.objects.get(account=account)
    assert (balance.amount, balance.debt) == (Decimal("5.00"), Decimal("120.00"))
    assert list(LedgerEntry.objects.order_by("id").values_list("kind", "amount")) == [
        ("topup", Decimal("900.00")),
        ("service_charge", Decimal("-900.00")),
    ]


@pytest.mark.parametrize(
    ("status", "to_status", "code"),
    [
        ("submitted", "completed", "illegal_transition"),
        ("submitted", "paid", "illegal_transition"),
        ("under_review", "estimate_issued", "illegal_transition"),
        ("under_review", "in_progress", "estimate_required"),
        ("estimate_issued", "in_progress", "illegal_transition"),
        ("completed", "in_progress", "illegal_transition"),
        ("rejected", "under_review", "illegal_transition"),
        ("submitted", "cancelled", "illegal_transition"),
    ],
)
def test_illegal_status_changes_are_refused(connection, status, to_status, code):
    ServiceRequest.objects.filter(pk=connection.pk).update(status=status)
    staff = support_staff(connection.utility)
    from core.errors import Conflict

    with pytest.raises(Conflict) as refused:
        services.request_transition(request_id=connection.pk, to_status=to_status, actor=staff)

    assert refused.value.code == code and refused.value.status_code == 409
    connection.refresh_from_db()
    assert connection.status == status
    assert not Notification.objects.exists()


def test_an_estimate_whose_checkout_expired_is_paid_through_a_new_one(make_api, settings):
    """The hosted page takes payment for PAYMENT_CHECKOUT_VALID_MINUTES; asking to pay after that
    starts a new checkout instead of returning a page that refuses payment."""
    utility = saudi()
    user, account = consumer(utility)
    request = ServiceRequestFactory(
        account=account,
        type=RequestType.objects.get(utility=utility, code="new_connection"),
        details=CONNECTION,
        status=ServiceRequest.Status.ESTIMATE_ISSUED,
        estimate_amount=Decimal("900.00"),
    )
    with time_machine.travel(riyadh(2026, 9, 1, 10, 0), tick=False):
        api = make_api(user)
        first = api.post(f"{URL}{request.pk}/estimate/pay/").json()
    with time_machine.travel(riyadh(2026, 9, 1, 10, 5), tick=False):
        api.as_user(user)
        resumed = api.post(f"{URL}{request.pk}/estimate/pay/").json()
    valid = settings.PAYMENT_CHECKOUT_VALID_MINUTES
    with time_machine.travel(riyadh(2026, 9, 1, 10, 0) + timedelta(minutes=valid + 1), tick=False):
        api.as_user(user)
        renewed = api.post(f"{URL}{request.pk}/estimate/pay/")

    assert resumed["topup_id"] == first["topup_id"]
    assert resumed["payment_url"] == first["payment_url"]
    assert renewed.status_code == 201
    assert renewed.json()["topup_id"] != first["topup_id"]
    request.refresh_from_db()
    assert str(request.estimate_topup_id) == renewed.json()["topup_id"]
    assert (
        renewed.json()["payment_url"]
        == TopUp.objects.get(pk=request.estimate_topup_id).checkout_url
    )
