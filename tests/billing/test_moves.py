"""Move-out and move-in: a tenancy ends and begins, and money follows each interval's holder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount
from billing import charging, moves
from billing.ledger import ledger_post
from billing.models import Balance, LedgerEntry, Move
from billing.selectors import ledger_check
from core.models import AuditEntry
from meters import services as meter_services
from meters.models import MeterAssignment
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.billing.factories import flat_tariff
from tests.meters.factories import MeterFactory, head_end_token

Q = timedelta(minutes=15)
DAY = datetime(2026, 11, 1, 21, tzinfo=UTC)  # Kuwait midnight, 2 November local
NOON = DAY + timedelta(hours=12)  # 12:00 in Kuwait


@pytest.fixture
def meter(db):
    meter = MeterFactory()
    flat_tariff(meter.utility, rate="0.005")  # 5 fils a kWh
    return meter


@pytest.fixture
def headend(make_api, meter):
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    return api


def ingest(meter, start, values):
    readings = [
        ({"index": i}, meter.serial, (start + i * Q).isoformat(), wh, "actual")
        for i, wh in enumerate(values)
    ]
    result = meter_services.readings_ingest(utility=meter.utility, readings=readings, source="test")
    assert result.rejected == 0


def credit(account, amount: str, key: str) -> None:
    ledger_post(
        account=account, kind="topup", amount=Decimal(amount), key=key, description="Top-up"
    )


def balance(account) -> Decimal:
    return Balance.objects.get(account=account).amount


def test_move_out_and_move_in_end_to_end_with_a_refund(make_api, headend, meter, sms_outbox):
    old = meter.account
    old_user = AccountLinkFactory(account=old).user
    credit(old, "5.000", "t1")
    ingest(meter, DAY, [1000] * 96)  # 1 kWh every quarter-hour, not charged yet

    out = headend.post(
        "/api/v1/utility/move-outs/", {"consumer_id": old.consumer_id, "at": NOON.isoformat()}
    )

    assert out.status_code == 201, out.json()
    # Final charging took the 48 intervals before noon (48 kWh at 5 fils), the rest is refunded.
    assert out.json()["credit"] == "refund" and out.json()["credit_amount"] == "4.760"
    assert out.json()["final_statement"]["meters"][0]["tenancy_end"] == NOON.isoformat()
    # The tenancy's last interval is the one that began at 11:45, read from the readings.
    assert (
        out.json()["final_statement"]["meters"][0]["last_interval_start"] == (NOON - Q).isoformat()
    )
    assert balance(old) == 0
    charged = LedgerEntry.objects.filter(account=old, kind="energy_charge")
    assert sum(e.kwh for e in charged) == Decimal("48.000")
    old.refresh_from_db()
    assert old.status == "closed" and old.closed_at is not None
    link = AccountLink.objects.get(account=old)
    assert link.end_reason == "account_closed"
    told = Notification.objects.get(user=old_user, category="moved_out")
    assert "4.760 KWD" in told.body or "4.760" in told.body
    assert any(
        m.to == old.registered_mobile and "Credit refunded or carried: 4.760 KWD" in m.body
        for m in sms_outbox
    )

    moved_in = headend.post(
        "/api/v1/utility/move-ins/",
        {
            "meter": meter.serial,
            "consumer_id": "20030001",
            "registered_mobile": "66001234",
            "name": "New Tenant",
            "at": NOON.isoformat(),
        },
    )
    assert moved_in.status_code == 201, moved_in.json()
    new = ConsumerAccount.objects.get(consumer_id="20030001")
    assert new.registered_mobile == "+96566001234" and balance(new) == 0
    charging.charges_run()
    # The afternoon is the new tenant's: 48 kWh.
    assert balance(new) == Decimal("-0.240") and balance(old) == 0
    assert ledger_check() == []

    # Retries answer the first result and change nothing.
    again = headend.post(
        "/api/v1/utility/move-outs/", {"consumer_id": old.consumer_id, "at": NOON.isoformat()}
    )
    assert (again.status_code, again.json()["id"]) == (200, out.json()["id"])
    again = headend.post(
        "/api/v1/utility/move-ins/",
        {
            "meter": meter.serial,
            "consumer_id": "20030001",
            "registered_mobile": "66001234",
            "name": "New Tenant",
        },
    )
    assert (again.status_code, again.json()["id"]) == (200, moved_in.json()["id"])
    assert Move.objects.count() == 2

    # The old tenant reads the closed account's statement, and can no longer pay into it.
    reader = make_api(old_user)
    statement = reader.get(f"/api/v1/accounts/{old.pk}/statement/").json()["results"]
    # The morning's energy (two UTC days' readings, one local day) is one entry.
    assert [e["kind"] for e in statement] == ["refund", "energy_charge", "topup"]
    listed = reader.get("/api/v1/links/").json()
    assert [(item["account"], item["access"]) for item in listed] == [(old.pk, "read_only")]
    paid = reader.post(
        f"/api/v1/accounts/{old.pk}/topups/", {"amount": "2.000"}, HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert (paid.status_code, paid.json()["error"]["code"]) == (409, "account_closed")


def test_debt_is_carried_to_the_consumers_new_account_or_written_off_with_a_reason(headend, meter):
    old = meter.account
    elsewhere = ConsumerAccountFactory(utility=meter.utility)
    Balance.objects.create(account=elsewhere)
    ledger_post(
        account=old,
        kind="debt_transfer",
        amount=Decimal("0"),
        key="arrears",
        description="Arrears",
        debt_change=Decimal("2.000"),
    )
    ingest(meter, DAY, [1000] * 40)  # 40 kWh: 0.200 owed once charged

    refused = headend.post("/api/v1/utility/move-outs/", {"consumer_id": old.consumer_id})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "debt_unsettled"
    assert refused.json()["error"]["owed"] == "2.200"
    # Nothing was written: the tenancy runs on, nothing charged, the account open.
    old.refresh_from_db()
    assert old.status == "active" and not Move.objects.exists()
    assert MeterAssignment.objects.get(meter=meter).end is None
    assert not LedgerEntry.objects.filter(kind="energy_charge").exists()

    carried = headend.post(
        "/api/v1/utility/move-outs/",
        {"consumer_id": old.consumer_id, "debt": "carry", "carry_to": elsewhere.consumer_id},
    )
    assert carried.status_code == 201, carried.json()
    assert (carried.json()["debt"], carried.json()["debt_amount"]) == ("carry", "2.200")
    assert Balance.objects.filter(account=old).values_list("amount", "debt").get() == (0, 0)
    assert Balance.objects.filter(account=elsewhere).values_list("amount", "debt").get() == (
        0,
        Decimal("2.200"),
    )
    assert ledger_check() == []


def test_a_write_off_needs_a_reason(headend, meter):
    ingest(meter, DAY, [1000] * 20)
    account = meter.account
    no_reason = headend.post(
        "/api/v1/utility/move-outs/", {"consumer_id": account.consumer_id, "debt": "write_off"}
    )
    assert (no_reason.status_code, no_reason.json()["error"]["code"]) == (400, "reason_required")
    done = headend.post(
        "/api/v1/utility/move-outs/",
        {"consumer_id": account.consumer_id, "debt": "write_off", "reason": "Deceased tenant"},
    )
    assert done.status_code == 201
    entry = LedgerEntry.objects.get(account=account, kind="debt_write_off")
    assert (entry.amount, entry.reason) == (Decimal("0.100"), "Deceased tenant")
    assert balance(account) == 0


def test_a_correction_across_a_move_is_charged_to_whoever_held_each_interval(headend, meter):
    old = meter.account
    credit(old, "10.000", "t1")
    ingest(meter, DAY, [1000] * 96)
    charging.charges_run()
    moves.move_out(account=old, at=NOON)  # dated back: the afternoon is refunded to the old one
    refund = LedgerEntry.objects.get(account=old, kind="energy_adjustment")
    assert (refund.amount, refund.kwh) == (Decimal("0.240"), Decimal("-48.000"))
    new = moves.move_in(
        meter=meter, consumer_id="N1", registered_mobile="+96566001234", name="N", at=NOON
    ).account
    charging.charges_run()
    assert balance(new) == Decimal("-0.240")

    # The head-end corrects 10:00 to 14:00 (16 intervals) from 1 kWh to 3 kWh each.
    ingest(meter, NOON - 8 * Q, [3000] * 16)
    charging.charges_run()

    old_fix = LedgerEntry.objects.filter(account=old).latest("id")
    new_fix = LedgerEntry.objects.filter(account=new).latest("id")
    assert (old_fix.kind, old_fix.amount, old_fix.kwh) == (
        "energy_adjustment",
        Decimal("-0.080"),
        Decimal("16.000"),
    )
    assert "After the final statement" in old_fix.description
    assert (new_fix.kind, new_fix.amount, new_fix.kwh) == (
        "energy_adjustment",
        Decimal("-0.080"),
        Decimal("16.000"),
    )
    assert ledger_check() == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"at": "2099-01-01T00:00:00Z"}, 400, "future"),
        ({"at": "2019-06-01T00:00:00Z"}, 400, "too_far_back"),
        ({"at": "0001-01-01T00:00:00Z"}, 400, "too_far_back"),
        ({"credit": "burn"}, 400, "invalid_choice"),
        ({"consumer_id": "nobody"}, 404, "unknown_consumer"),
    ],
)
def test_a_bad_move_out_is_refused_and_writes_nothing(headend, meter, body, status, code):
    credit(meter.account, "1.000", "t1")
    response = headend.post(
        "/api/v1/utility/move-outs/", {"consumer_id": meter.account.consumer_id, **body}
    )
    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert code in (error["code"], *[e["code"] for f in error["fields"].values() for e in f])
    assert not Move.objects.exists() and meter.account.status == "active"
    assert MeterAssignment.objects.get(meter=meter).end is None


def test_a_move_out_with_readings_that_cannot_be_charged_is_refused(headend, meter):
    meter.utility.tariffs.all().delete()  # no tariff: the pending readings cannot be priced
    ingest(meter, DAY, [1000] * 8)
    response = headend.post(
        "/api/v1/utility/move-outs/", {"consumer_id": meter.account.consumer_id}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (409, "charging_unsettled")
    assert not Move.objects.exists() and not LedgerEntry.objects.exists()
    assert MeterAssignment.objects.get(meter=meter).end is None


def test_a_move_in_needs_a_vacant_meter_and_comes_after_the_last_move_out(headend, meter):
    body = {
        "meter": meter.serial,
        "consumer_id": "N1",
        "registered_mobile": "66001234",
        "name": "N",
    }
    occupied = headend.post("/api/v1/utility/move-ins/", body)
    assert (occupied.status_code, occupied.json()["error"]["code"]) == (409, "meter_occupied")

    moves.move_out(account=meter.account, at=NOON)
    early = headend.post("/api/v1/utility/move-ins/", {**body, "at": (NOON - Q).isoformat()})
    assert (early.status_code, early.json()["error"]["code"]) == (400, "overlapping_tenancy")
    taken = headend.post(
        "/api/v1/utility/move-ins/", {**body, "consumer_id": meter.account.consumer_id}
    )
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "consumer_id_taken")
    bad_mobile = headend.post("/api/v1/utility/move-ins/", {**body, "registered_mobile": "12"})
    assert bad_mobile.status_code == 400
    assert not ConsumerAccount.objects.filter(consumer_id="N1").exists()
    assert MeterAssignment.objects.filter(meter=meter, end__isnull=True).count() == 0


def test_another_utilitys_token_reaches_nothing(make_api, meter):
    other = MeterFactory(utility__code="eg-nedc", utility__country="EG").utility
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(other)}")
    response = api.post("/api/v1/utility/move-outs/", {"consumer_id": meter.account.consumer_id})
    assert response.status_code == 404
    anonymous = make_api().post("/api/v1/utility/move-outs/", {"consumer_id": "x"})
    assert anonymous.status_code == 401


def test_staff_move_tenants_in_the_admin_by_consumer_id_and_serial(client, meter):
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client.force_login(staff)
    old = meter.account
    credit(old, "3.000", "t1")
    local_noon = NOON.astimezone(meter.utility.zone).strftime("%Y-%m-%d %H:%M")

    out = client.post(
        "/admin/billing/move/out/",
        {"account": old.pk, "at": local_noon},
    )
    assert out.status_code == 302, out.context["form"].errors
    moved_in = client.post(
        "/admin/billing/move/in/",
        {
            "utility": meter.utility.pk,
            "meter": meter.serial,
            "consumer_id": "N77",
            "registered_mobile": "66001234",
            "name": "New Tenant",
            "at": local_noon,
        },
    )
    assert moved_in.status_code == 302, moved_in.context["form"].errors
    assert [m.at for m in Move.objects.order_by("id")] == [NOON, NOON]
    assert set(AuditEntry.objects.values_list("action", flat=True)) >= {"move-out", "move-in"}
    page = client.get("/admin/billing/move/")
    assert b"N77" in page.content and old.consumer_id.encode() in page.content
    assert b"2026-11-02 12:00 +03" in page.content  # the utility's time, with its zone

    again = client.post(
        "/admin/billing/move/in/",
        {
            "utility": meter.utility.pk,
            "meter": "NO-SUCH",
            "consumer_id": "N78",
            "registered_mobile": "66001234",
            "name": "X",
        },
    )
    assert again.status_code == 200 and "has no meter NO-SUCH" in str(again.context["form"].errors)


def test_staff_without_the_move_permission_cannot_move_anyone(client, meter):
    client.force_login(UserFactory(username="clerk", is_staff=True))
    response = client.post(
        "/admin/billing/move/out/",
        {"account": meter.account.pk},
    )
    assert response.status_code == 403 and not Move.objects.exists()


def test_a_move_out_before_the_tenancy_began_is_refused(headend, meter):
    began = timezone.now() - timedelta(days=2)
    MeterAssignment.objects.filter(meter=meter).update(start=began)
    response = headend.post(
        "/api/v1/utility/move-outs/",
        {"consumer_id": meter.account.consumer_id, "at": (began - Q).isoformat()},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (
        400,
        "move_out_before_move_in",
    )
    assert not Move.objects.exists()


def test_the_admin_refuses_a_move_dated_in_year_one(client, meter):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    for path, extra in (
        ("/admin/billing/move/out/", {"account": meter.account.pk}),
        (
            "/admin/billing/move/in/",
            {
                "meter": meter.serial,
                "consumer_id": "N",
                "registered_mobile": "66001234",
                "name": "N",
            },
        ),
    ):
        response = client.post(
            path, {"utility": meter.utility.pk, "at": "0001-01-01 00:00", **extra}
        )
        assert response.status_code == 200
        assert "at" in response.context["form"].errors
    assert not Move.objects.exists()


def test_credit_repays_debt_before_anything_is_refunded(headend, meter):
    old = meter.account
    credit(old, "5.000", "t1")
    ledger_post(
        account=old,
        kind="debt_transfer",
        amount=Decimal("0"),
        key="arrears",
        description="Arrears",
        debt_change=Decimal("3.000"),
    )
    out = headend.post("/api/v1/utility/move-outs/", {"consumer_id": old.consumer_id})
    assert out.status_code == 201, out.json()
    assert (out.json()["credit_amount"], out.json()["debt_amount"]) == ("2.000", "0.000")
    assert Balance.objects.filter(account=old).values_list("amount", "debt").get() == (0, 0)
    assert LedgerEntry.objects.get(account=old, kind="debt_recovery").amount == Decimal("-3.000")


def test_a_move_out_dated_back_gives_the_days_fixed_charges_to_the_next_tenant(meter):
    meter.utility.tariffs.update(fixed_daily_charge=Decimal("0.100"))
    old = meter.account
    credit(old, "10.000", "t1")
    ingest(meter, DAY, [1000] * 96 * 2)  # two local days, 2 and 3 November
    charging.charges_run()
    assert LedgerEntry.objects.filter(account=old, kind="fixed_charge").count() == 2
    moves.move_out(account=old, at=DAY + timedelta(days=1))  # from local midnight, 3 November
    new = moves.move_in(
        meter=meter,
        consumer_id="N1",
        registered_mobile="+96566001234",
        name="N",
        at=DAY + timedelta(days=1),
    ).account
    charging.charges_run()
    fixed = lambda account: sum(  # noqa: E731
        LedgerEntry.objects.filter(account=account, kind="fixed_charge").values_list(
            "amount", flat=True
        )
    )
    assert (fixed(old), fixed(new)) == (Decimal("-0.100"), Decimal("-0.100"))
    assert ledger_check() == []


def test_a_postpaid_move_out_settles_its_bills_and_no_fine_follows(headend, db):
    from billing import bills
    from billing.models import Bill
    from tests.billing.factories import policy, progressive_tariff
    from tests.meters.factories import egypt

    utility = egypt()
    utility.late_fine_percent = Decimal("7")
    utility.save()
    progressive_tariff(utility, slabs=((0, "0.68"),), fixed="1.00")
    policy(utility, bill_due_days=1)
    meter = MeterFactory(utility=utility, payment_mode="postpaid")
    account = meter.account
    out = moves.move_out(
        account=account, choice=moves.MoveOutChoice(debt="write_off", reason="Left the country")
    )
    assert out.debt == "write_off" and out.debt_amount > 0
    final = Bill.objects.filter(account=account)
    assert final.exists() and set(final.values_list("status", flat=True)) == {"written_off"}
    # The final bills cover the move's month and the one before: never years of history.
    assert final.count() <= 2
    assert bills.fines_apply(today=timezone.now().date() + timedelta(days=60)) == []
    assert bills.arrears_flag() == []


def test_no_channel_takes_money_into_a_closed_account(client, meter):
    from billing import payments
    from billing.models import PaymentPartner

    account = meter.account
    moves.move_out(account=account)
    account.refresh_from_db()
    code = payments.payment_code_for(account)
    partner, _ = payments.partner_token_create(utility=meter.utility, name="Fawry")
    with pytest.raises(Exception, match="closed"):
        payments.payment_code_account(code=code, partner=PaymentPartner.objects.get(pk=partner.pk))
    cashier = UserFactory(username="cashier", is_staff=True, is_superuser=True)
    with pytest.raises(Exception, match="closed"):
        payments.counter_payment_record(account=account, amount="5.000", cashier=cashier)
    with pytest.raises(Exception, match="closed"):
        payments.payment_link_create(account=account, amount="5.000", created_by=cashier)
    assert not LedgerEntry.objects.filter(account=account, kind="topup").exists()


def test_the_moves_api_gives_amounts_in_the_currencys_decimals(make_api):
    from tests.meters.factories import india

    meter = MeterFactory(utility=india(), serial="INM-MOVE-1")
    flat_tariff(meter.utility, rate="6.30")
    credit(meter.account, "250.00", "t1")
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")

    out = api.post("/api/v1/utility/move-outs/", {"consumer_id": meter.account.consumer_id})

    assert out.status_code == 201, out.json()
    assert (out.json()["credit_amount"], out.json()["debt_amount"]) == ("250.00", "0.00")
