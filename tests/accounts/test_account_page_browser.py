"""Answering a call from the account page, in a real browser at 1366 px: support staff find the
account by the caller's mobile, read balance and days left, meters and the ledger, and send a
payment link from the page; a cashier takes cash from the same page."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.ledger import ledger_post
from billing.models import LedgerEntry, PaymentLink, TopUp
from notifications import sms
from tests.accounts.factories import AccountLinkFactory
from tests.billing.factories import role_member
from tests.browser import assert_fits, needs_browser, screenshot, staff_login
from tests.meters.factories import MeterFactory

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def prepaid_account_spending_a_dinar_a_day():
    meter = MeterFactory(
        serial="KWM0088001",
        account__consumer_id="10088001",
        account__name="Yousef Al-Mutairi",
        account__registered_mobile="+96550008123",
    )
    account = meter.account
    zone = account.utility.zone
    today = timezone.now().astimezone(zone).date()
    ledger_post(
        account=account,
        kind=LedgerEntry.Kind.TOPUP,
        amount=Decimal("20"),
        key="seed:topup",
        description="Top-up",
    )
    for n in range(1, 8):
        day = today - timedelta(days=n)
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.ENERGY_CHARGE,
            amount=Decimal("-1"),
            key=f"seed:charge:{n}",
            description=f"Energy {day:%d %b}",
            period_start=datetime.combine(day, time(0), zone),
            period_end=datetime.combine(day + timedelta(days=1), time(0), zone),
        )
    AccountLinkFactory(account=account, verified_mobile="+96550008123")
    return account


def test_answering_a_call_from_the_account_page(live_server, browser_page):
    account = prepaid_account_spending_a_dinar_a_day()
    support = role_member(account.utility, "support")
    page = browser_page

    staff_login(page, live_server, support, next_path="/admin/accounts/consumeraccount/")
    assert_fits(page)
    page.fill("#searchbar", "5000 8123")  # the caller's mobile, as they say it
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "10088001" in rows.first.inner_text()
    assert "+965 ••••8123" in rows.first.inner_text()
    assert_fits(page)
    page.click("#result_list tbody tr a:has-text('10088001')")
    page.wait_for_selector("#account-page")

    assert page.inner_text("#balance-figure") == "13.000 KWD"
    assert "days left" in page.inner_text("#days-left")
    meters = page.inner_text("#panel-meters")
    assert "KWM0088001" in meters and "Closed (supply on)" in meters
    ledger = page.inner_text("#panel-ledger")
    assert "-1.000 KWD" in ledger and "20.000 KWD" in ledger and "+03" in ledger
    assert "+965 ••••8123" in page.inner_text("#panel-links")
    assert "50008123" not in page.content()
    assert page.locator("#take-cash").count() == 0  # support takes no cash
    chart = page.locator("#panel-usage svg.chart")
    assert chart.count() == 1
    # The chart has its value axis with the unit, and a tick per local day.
    assert "kWh" in chart.text_content() and chart.locator("text.tick").count() == 14
    assert_fits(page)
    screenshot(page, "account-page")

    page.fill("#send-payment-link input[name=amount]", "15")
    page.click("#send-payment-link input[type=submit]")
    page.wait_for_selector("#account-page")
    assert "Payment link sent by SMS" in page.inner_text(".messagelist")
    link = PaymentLink.objects.get()
    assert (link.account_id, link.amount) == (account.pk, Decimal("15.000"))
    assert sms.outbox[-1].to == "+96550008123"
    assert_fits(page)

    # The other lists support reads about the account fit the window too.
    for path in ("/admin/billing/move/", "/admin/accounts/accountlink/", "/admin/billing/topup/"):
        page.goto(f"{live_server.url}{path}?q=10088001")
        assert_fits(page)

    cashier = role_member(account.utility, "cashier")
    page.context.clear_cookies()
    staff_login(
        page,
        live_server,
        cashier,
        next_path=f"/admin/accounts/consumeraccount/{account.pk}/change/",
    )
    assert page.locator("#send-payment-link").count() == 0
    page.fill("#take-cash input[name=amount]", "5")
    page.click("#take-cash input[type=submit]")
    page.wait_for_selector("#receipt")
    topup = TopUp.objects.get(channel="counter")
    assert topup.account_id == account.pk and topup.receipt_number in page.inner_text("#receipt")
    assert_fits(page)
    page.click("text=Back to the account")
    page.wait_for_selector("#account-page")
    assert page.inner_text("#balance-figure") == "18.000 KWD"
    assert_fits(page)
