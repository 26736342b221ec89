"""Taking cash by typing a consumer id, in a real browser at 1366 px: the cashier opens the counter
payment, types the consumer ID printed on the bill into the account's autocomplete, picks the
account, enters the amount and prints the receipt (its time in the utility's zone)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Balance, LedgerEntry, TopUp
from core.phone import phone_mask
from tests.accounts.factories import ConsumerAccountFactory
from tests.billing.factories import role_member
from tests.browser import assert_fits, needs_browser, screenshot, staff_login
from tests.meters.factories import MeterFactory, egypt

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def test_taking_cash_by_typing_a_consumer_id(live_server, browser_page):
    account = MeterFactory(account__consumer_id="10055501", account__name="Fatima Al-Sabah").account
    ConsumerAccountFactory(utility=account.utility, consumer_id="10055502")
    # The same consumer ID at another utility: never offered to Kuwait's cashier.
    ConsumerAccountFactory(utility=egypt(), consumer_id="10055501")
    cashier = role_member(account.utility, "cashier")
    page = browser_page

    staff_login(page, live_server, cashier, next_path="/admin/billing/topup/counter/")
    assert_fits(page)
    page.click(".select2-selection")  # the account's autocomplete
    page.fill(".select2-search__field", "10055501")
    option = page.locator(".select2-results__option", has_text="10055501")
    option.first.wait_for()
    page.wait_for_selector(".select2-results__option.loading-results", state="detached")
    offered = page.locator(".select2-results__option").all_inner_texts()
    masked = phone_mask(account.registered_mobile)
    # The cashier confirms the holder's name and mobile (masked) before taking the cash.
    assert offered == [f"10055501 ({account.utility.code}) · Fatima Al-Sabah · {masked}"]
    option.first.click()
    page.fill("#id_amount", "12.5")
    assert_fits(page)
    screenshot(page, "counter-payment-form")
    page.click("input[type=submit]")
    page.wait_for_selector("#receipt")

    topup = TopUp.objects.get()
    assert (topup.account_id, topup.amount, topup.channel) == (
        account.pk,
        Decimal("12.500"),
        "counter",
    )
    entry = LedgerEntry.objects.get(account=account)
    assert entry.amount == Decimal("12.500") and entry.created_by == cashier
    assert Balance.objects.get(account=account).amount == Decimal("12.500")
    receipt = page.inner_text("#receipt")
    assert topup.receipt_number in receipt and "12.500 KWD" in receipt
    assert "10055501 — Fatima Al-Sabah" in receipt
    assert page.inner_text("#receipt-time").endswith("+03")
    assert_fits(page)
    screenshot(page, "counter-payment")

    # The lists the cashier checks next fit the window, with the payment in local time.
    for path, name in (
        ("/admin/billing/topup/", "topups"),
        ("/admin/billing/ledgerentry/", "ledger"),
    ):
        page.goto(f"{live_server.url}{path}")
        listing = page.inner_text("#result_list")
        assert "12.500 KWD" in listing and "+03" in listing
        assert_fits(page)
        screenshot(page, f"counter-{name}-list")
