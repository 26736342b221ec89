"""Every amount a person or a client reads is in its currency's own decimals (issue 13): KWD with
3, EGP, SAR and INR with 2, although the database keeps 3 decimals for every currency. Through the
API, the admin pages staff use, and the push and SMS texts consumers get."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.models import Utility
from billing import moves
from billing.ledger import ledger_post
from notifications import categories as c
from notifications.messages import MONEY_PLACEHOLDERS, RUNOUT_TEMPLATES, TEMPLATES, message_render
from notifications.models import Notification
from notifications.services import balance_alerts_evaluate
from outages import standards
from outages.models import Compensation, StandardsPolicy
from servicerequests.models import ConnectionPolicy, RequestType, ServiceRequest
from servicerequests.seed import request_types_seed
from tests.accounts.factories import (
    SAUDI,
    AccountLinkFactory,
    ConsumerAccountFactory,
    UserFactory,
    UtilityFactory,
)
from tests.meters.factories import EGYPT, INDIA, MeterFactory
from tests.notifications.factories import DeviceFactory, PreferenceFactory
from tests.outages.factories import consumer_on, outage_run, staff_member, transformer_of
from tests.servicerequests.factories import ServiceRequestFactory, support_staff

pytestmark = pytest.mark.django_db

COUNTRIES = {"KWD": {}, "EGP": EGYPT, "SAR": SAUDI, "INR": INDIA}
DIGITS = {"KWD": 3, "EGP": 2, "SAR": 2, "INR": 2}
# How money_format writes 400 for an English reader in each country.
ENGLISH_400 = {"KWD": "KWD 400.000", "EGP": "EGP 400.00", "SAR": "SAR 400.00", "INR": "₹400.00"}
ENGLISH_1_5 = {"KWD": "KWD 1.500", "EGP": "EGP 1.50", "SAR": "SAR 1.50", "INR": "₹1.50"}
THURSDAY_9 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


@pytest.fixture(params=list(COUNTRIES))
def utility(request) -> Utility:
    return UtilityFactory(**COUNTRIES[request.param])


def right(amount: str, utility: Utility, *, code: bool = True) -> str:
    """`amount` as the currency writes it: "1.500 KWD", "1.50 INR"."""
    digits = f"{Decimal(amount):.{DIGITS[utility.currency]}f}"
    return f"{digits} {utility.currency}" if code else digits


def assert_shown(text: str, amount: str, utility: Utility, *, code: bool = True) -> None:
    """`amount` is in `text` in the currency's decimals, and not with the database's three."""
    assert right(amount, utility, code=code) in text
    if DIGITS[utility.currency] != 3:
        three = f"{Decimal(amount):.3f}"
        assert three not in text, f"{three} in {text!r}"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def superuser(client):
    admin = UserFactory(username="root", phone=None, is_staff=True, is_superuser=True)
    client.force_login(admin)
    return admin


# --- Compensation: the API, its reason, the alert, the admin ---------------------------------


@pytest.fixture
def compensated(utility):
    """An outage that ran 9 h 20 min against the 6 h standard: 200 + 4 × 50 = 400 owed."""
    StandardsPolicy.objects.create(utility=utility)
    transformer = transformer_of(utility)
    _meter, (person,) = consumer_on(transformer)
    outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9, minutes=20))
    return Compensation.objects.get(), person


def test_the_compensations_api_gives_the_amount_and_its_reason_in_the_currencys_decimals(
    make_api, utility, compensated
):
    _, person = compensated

    [row] = make_api(person).get("/api/v1/compensations/").json()

    assert (row["amount"], row["currency"]) == (right("400", utility, code=False), utility.currency)
    assert f"{right('200', utility)} + 4 started hour(s) × {right('50', utility)}" in row["reason"]
    assert_shown(row["reason"], "200", utility)


def test_the_compensation_alert_and_the_statement_say_the_amount_in_the_currencys_decimals(
    make_api, utility, compensated, fcm_server, django_capture_on_commit_callbacks
):
    compensation, person = compensated
    device = DeviceFactory(user=person)

    with django_capture_on_commit_callbacks(execute=True):
        standards.compensations_pay_due(now=compensation.exemption_deadline)

    alert = Notification.objects.get(user=person, category=c.COMPENSATION_CREDITED)
    pushed = fcm_server.messages_to(device.token)[0]["notification"]["body"]
    assert pushed == alert.body
    assert f"We credited {ENGLISH_400[utility.currency]} to account" in pushed
    assert_shown(pushed, "400", utility, code=False)
    statement = make_api(person).get(f"/api/v1/accounts/{compensation.account_id}/statement/")
    [entry] = statement.json()["results"]
    assert_shown(entry["reason"], "200", utility)


def test_staff_see_compensations_in_the_currencys_decimals(client, utility, compensated):
    compensation, _ = compensated
    client.force_login(staff_member(utility, "approver"))

    listed = client.get("/admin/outages/compensation/").content.decode()
    shown = client.get(f"/admin/outages/compensation/{compensation.pk}/change/").content.decode()

    assert_shown(listed, "400", utility)
    assert_shown(shown, "400", utility)
    assert str(compensation).startswith(f"Supply restored late: {right('400', utility)} to ")


def test_marking_a_disconnection_wrongful_reports_the_amount_in_the_currencys_decimals(
    client, utility
):
    from billing.models import RelayCommand

    StandardsPolicy.objects.create(utility=utility)
    meter = MeterFactory(utility=utility)
    command = RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action=RelayCommand.Action.DISCONNECT,
        reason="non_payment",
        status=RelayCommand.Status.DONE,
        not_before=THURSDAY_9,
        completed_at=THURSDAY_9,
    )
    superuser(client)

    response = client.post(
        "/admin/outages/disconnection/",
        {"action": "mark_wrongful", "_selected_action": [command.pk]},
        follow=True,
    )

    [said] = [str(m) for m in response.context["messages"]]
    assert f"{right('500', utility)} compensation recorded" in said
    assert_shown(said, "500", utility)


# --- Policies: lists and forms ----------------------------------------------------------------


def test_the_standards_policy_is_listed_and_edited_in_the_currencys_decimals(client, utility):
    StandardsPolicy.objects.create(utility=utility)
    client.force_login(staff_member(utility, "approver"))
    url = f"/admin/outages/standardspolicy/{utility.pk}/change/"

    listed = client.get("/admin/outages/standardspolicy/").content.decode()
    form = client.get(url).context["adminform"].form

    assert_shown(listed, "100", utility)
    assert_shown(listed, "500", utility)
    assert form["notice_amount"].value() == right("100", utility, code=False)
    assert f'value="{right("100", utility, code=False)}"' in str(form["notice_amount"])


@pytest.mark.parametrize("currency", ["SAR", "KWD"])
def test_a_policy_amount_with_more_decimals_than_the_currency_is_refused(client, currency):
    utility = UtilityFactory(**COUNTRIES[currency])
    policy = StandardsPolicy.objects.create(utility=utility)
    superuser(client)
    url = f"/admin/outages/standardspolicy/{utility.pk}/change/"
    data = {
        field.name: field.value()
        for field in client.get(url).context["adminform"].form
        if field.value() is not None
    }

    response = client.post(url, {**data, "notice_amount": "120.125"})

    policy.refresh_from_db()
    if currency == "SAR":
        assert response.status_code == 200
        assert "At most 2 decimal places for this currency." in response.content.decode()
        assert policy.notice_amount == Decimal("100")
    else:
        assert response.status_code == 302
        assert policy.notice_amount == Decimal("120.125")


def test_the_connection_standard_is_listed_in_the_currencys_decimals(client, utility):
    ConnectionPolicy.objects.create(utility=utility)
    superuser(client)

    listed = client.get("/admin/servicerequests/connectionpolicy/").content.decode()
    form = client.get(f"/admin/servicerequests/connectionpolicy/{utility.pk}/change/")

    assert_shown(listed, "400", utility)
    assert_shown(listed, "20", utility)
    assert form.context["adminform"].form["amount"].value() == right("400", utility, code=False)


def test_the_smallest_top_up_is_edited_in_the_currencys_decimals(client, utility):
    utility.min_topup = Decimal("10")
    utility.save()
    superuser(client)

    form = client.get(f"/admin/accounts/utility/{utility.pk}/change/").context["adminform"].form

    assert form["min_topup"].value() == right("10", utility, code=False)


# --- Service requests: the estimate -------------------------------------------------------------


def test_an_estimate_is_in_the_currencys_decimals_in_the_app_the_timeline_and_the_admin(
    client, make_api, utility
):
    request_types_seed(utility=utility)
    user = UserFactory()
    account = AccountLinkFactory(user=user, account=ConsumerAccountFactory(utility=utility)).account
    request = ServiceRequestFactory(
        account=account,
        type=RequestType.objects.get(utility=utility, code="cost_estimate"),
        details={"work": "load_increase", "plot_number": "4"},
        status=ServiceRequest.Status.UNDER_REVIEW,
    )
    client.force_login(support_staff(utility))
    url = f"/admin/servicerequests/servicerequest/{request.pk}/"

    issued = client.post(f"{url}estimate/", {"amount": "12.5", "note": "New cable"})
    body = make_api(user).get(f"/api/v1/service-requests/{request.pk}/").json()
    change = client.get(f"{url}change/").content.decode()
    step = client.get(f"{url}reply/").content.decode()

    assert issued.status_code == 302
    assert body["estimate"]["amount"] == right("12.5", utility, code=False)
    [event] = [e for e in body["timeline"] if e["kind"] == "estimate"]
    assert event["text"] == f"{right('12.5', utility)}. New cable"
    assert_shown(change, "12.5", utility)
    assert f"Estimate: {right('12.5', utility)}." in step


def test_a_late_connection_gives_its_reason_in_the_currencys_decimals(utility):
    from servicerequests import deadlines

    StandardsPolicy.objects.create(utility=utility)
    request_types_seed(utility=utility, connection_standard=True)
    request = ServiceRequestFactory(
        account=ConsumerAccountFactory(utility=utility),
        type=RequestType.objects.get(utility=utility, code="new_connection"),
        details={"voltage": "low", "plot_number": "7"},
        status=ServiceRequest.Status.IN_PROGRESS,
        deadline_at=THURSDAY_9,
        deadline_working_days=20,
    )

    assert deadlines.request_deadline_missed(
        request_id=request.pk, now=THURSDAY_9 + timedelta(days=7)
    )

    reason = Compensation.objects.get().reason
    assert f": {right('400', utility)} + " in reason and f" × {right('20', utility)}." in reason


# --- Move-out: the API message, the SMS, the alert, the admin -------------------------------------


def test_a_move_out_says_what_is_owed_and_refunded_in_the_currencys_decimals(
    client, utility, sms_outbox, django_capture_on_commit_callbacks
):
    owing = MeterFactory(utility=utility).account
    ledger_post(
        account=owing,
        kind="debt_transfer",
        amount=Decimal(0),
        key="arrears",
        description="Arrears",
        debt_change=Decimal("2.2"),
    )
    leaving = MeterFactory(utility=utility).account
    person = AccountLinkFactory(account=leaving).user
    ledger_post(account=leaving, kind="topup", amount=Decimal("5.5"), key="t", description="Top-up")

    with pytest.raises(moves.Conflict) as refused:
        moves.move_out(account=owing)
    with django_capture_on_commit_callbacks(execute=True):
        move = moves.move_out(account=leaving, choice=moves.MoveOutChoice(credit="refund"))

    assert f"The account owes {right('2.2', utility)}: carry it" in refused.value.message
    assert refused.value.extra["owed"] == right("2.2", utility, code=False)
    assert move.final_statement["balance"] == right("0", utility, code=False)
    [sms] = [m for m in sms_outbox if m.to == leaving.registered_mobile]
    assert f"Credit refunded or carried: {right('5.5', utility)}" in sms.body
    assert_shown(sms.body, "5.5", utility)
    told = Notification.objects.get(user=person, category=c.MOVED_OUT)
    assert_shown(told.body, "5.5", utility, code=False)
    superuser(client)
    listed = client.get("/admin/billing/move/").content.decode()
    shown = client.get(f"/admin/billing/move/{move.pk}/change/").content.decode()
    assert_shown(listed, "5.5", utility)
    assert_shown(shown, "5.5", utility)


# --- Alerts: every money placeholder, the SMS fallback, the preferences --------------------------


def test_every_placeholder_that_holds_money_is_formatted_as_money():
    """A new placeholder must be named here or in MONEY_PLACEHOLDERS: an amount passed through as
    plain text would keep the database's three decimals."""
    names = {
        name
        for texts in (TEMPLATES, RUNOUT_TEMPLATES)
        for languages in texts.values()
        for title, body in languages.values()
        for name in placeholders(title + body)
    }
    not_money = {
        "consumer_id",
        "days",
        "disconnect_at",
        "area",
        "start",
        "end",
        "restored_at",
        "reason",
        "request_id",
        "request_type",
        "status",
        "at",
        "disconnect_earliest",
        "repay_by",
        "demand_at",
        "card",
        "holder",
        "percent",
        "usage_kwh",
        "baseline_kwh",
        "demand_kw",
        "sanctioned_kw",
    }
    assert names - not_money == MONEY_PLACEHOLDERS


@pytest.mark.parametrize("given", [Decimal("100.000"), "100.000", 100])
def test_amounts_in_alerts_have_the_currencys_decimals_however_the_caller_gives_them(
    utility, given
):
    for category, languages in TEMPLATES.items():
        _, body = languages["en"]
        money = {name for name in MONEY_PLACEHOLDERS if "{" + name + "}" in body}
        if not money:
            continue
        context = {name: "x" for name in placeholders(body)} | {"days": 2}
        context |= dict.fromkeys(money, given)
        rendered = message_render(
            category=category, language="en", context=context, utility=utility
        )
        assert_shown(rendered.body, "100", utility, code=False)


def test_a_zero_balance_sms_has_the_currencys_decimals(
    utility, sms_outbox, django_capture_on_commit_callbacks
):
    link = AccountLinkFactory(account=ConsumerAccountFactory(utility=utility))

    with django_capture_on_commit_callbacks(execute=True):
        balance_alerts_evaluate(account=link.account, balance=Decimal("-1.500"))

    [sms] = sms_outbox
    assert sms.to == link.user.phone
    assert f"has no balance left (-{ENGLISH_1_5[utility.currency]})" in sms.body


def test_my_low_balance_amount_is_in_my_accounts_currency(make_api, client, utility):
    user = AccountLinkFactory(account=ConsumerAccountFactory(utility=utility)).user
    api = make_api(user)

    saved = api.patch("/api/v1/notification-preferences/", {"low_balance_amount": "2.5"})
    too_fine = api.patch("/api/v1/notification-preferences/", {"low_balance_amount": "2.505"})

    assert saved.status_code == 200
    assert (saved.json()["low_balance_amount"], saved.json()["currency"]) == (
        right("2.5", utility, code=False),
        utility.currency,
    )
    if DIGITS[utility.currency] == 2:
        assert too_fine.status_code == 400
        error = too_fine.json()["error"]["fields"]["low_balance_amount"][0]
        assert error["code"] == "too_many_decimals"
    else:
        assert too_fine.json()["low_balance_amount"] == "2.505"
    superuser(client)
    listed = client.get("/admin/notifications/notificationpreference/").content.decode()
    amount = "2.505" if DIGITS[utility.currency] == 3 else "2.5"
    assert right(amount, utility) in listed


def test_a_low_balance_amount_without_an_account_is_shown_as_saved(make_api):
    user = UserFactory()
    PreferenceFactory(user=user, low_balance_amount=Decimal("2.500"))

    body = make_api(user).get("/api/v1/notification-preferences/").json()

    assert (body["low_balance_amount"], body["currency"]) == ("2.500", None)
