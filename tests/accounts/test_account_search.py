"""Staff find an account by what they have in hand, everywhere an account is chosen: the account
list, the autocomplete of the counter and adjustment forms, the top-up list. Never another
utility's account, never by an internal id."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing import payments
from billing.models import TopUp
from tests.accounts.factories import ConsumerAccountFactory, UserFactory
from tests.meters.factories import MeterFactory, egypt
from tests.outages.factories import staff_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def kuwait_meter():
    return MeterFactory(
        serial="KWM0042001",
        account__consumer_id="10042001",
        account__registered_mobile="+96550001234",
    )


@pytest.fixture
def cairo_account():
    # The same consumer ID and mobile digits in another utility: never found by Kuwait's staff.
    return MeterFactory(
        utility=egypt(),
        serial="KWM0042001",
        account__consumer_id="10042001",
        account__registered_mobile="+201001234567",
    ).account


def listed(client, term: str) -> list[str]:
    response = client.get(reverse("admin:accounts_consumeraccount_changelist"), {"q": term})
    assert response.status_code == 200
    return sorted(
        row.consumer_id + "@" + row.utility.code for row in response.context["cl"].result_list
    )


def offered(account) -> str:
    """An account as the autocomplete offers it: staff confirm the holder's name and mobile."""
    from core.phone import phone_mask

    return f"{account} · {account.name} · {phone_mask(account.registered_mobile)}"


def autocomplete(client, term: str, model: str = "topup") -> list[str]:
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "billing", "model_name": model, "field_name": "account", "term": term},
    )
    assert response.status_code == 200
    return [result["text"] for result in response.json()["results"]]


def test_the_account_list_finds_an_account_by_every_key_staff_have_in_hand(
    client, kuwait_meter, cairo_account
):
    account = kuwait_meter.account
    client.force_login(staff_member(account.utility, role="support"))
    topup = payments.counter_payment_record(
        account=account, amount=Decimal("2.500"), cashier=UserFactory(is_staff=True)
    )
    code = payments.payment_code_for(account)
    mine = [f"10042001@{account.utility.code}"]

    assert listed(client, "10042001") == mine  # the consumer ID on the bill
    assert listed(client, "kwm0042001") == mine  # the meter's serial, as typed
    for mobile in ("+965 5000 1234", "50001234", "0096550001234", "96550001234", "+96550001234"):
        assert listed(client, mobile) == mine, mobile
    assert listed(client, topup.receipt_number.lower()) == mine  # the receipt
    assert listed(client, f"{code[:4]} {code[4:8]} {code[8:]}") == mine  # the payment code
    # An internal id, a payment code with a slipped digit: nothing.
    assert listed(client, str(account.pk)) == []
    slipped = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert listed(client, slipped) == []


def test_another_utilitys_account_is_never_found(client, kuwait_meter, cairo_account):
    client.force_login(staff_member(kuwait_meter.utility, role="cashier"))

    assert listed(client, "+201001234567") == []
    assert listed(client, "01001234567") == []
    assert listed(client, payments.payment_code_for(cairo_account)) == []
    assert autocomplete(client, "+20 100 123 4567") == []
    # The shared consumer ID and serial find Kuwait's account only.
    assert autocomplete(client, "10042001") == [offered(kuwait_meter.account)]
    assert autocomplete(client, "KWM0042001") == [offered(kuwait_meter.account)]


def test_the_forms_autocomplete_takes_every_key_and_a_superuser_searches_every_utility(
    client, kuwait_meter, cairo_account
):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, phone=None))

    assert sorted(autocomplete(client, "10042001")) == sorted(
        [offered(kuwait_meter.account), offered(cairo_account)]
    )
    assert autocomplete(client, "010 0123 4567", model="ledgerentry") == [offered(cairo_account)]
    assert autocomplete(client, "5000 1234", model="move") == [offered(kuwait_meter.account)]


def test_staff_who_may_not_read_accounts_get_no_autocomplete(client, kuwait_meter):
    client.force_login(UserFactory(is_staff=True, phone=None))
    response = client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "billing",
            "model_name": "topup",
            "field_name": "account",
            "term": "10042001",
        },
    )
    assert response.status_code == 403


def test_the_top_up_list_is_searched_by_the_same_keys(client, kuwait_meter, cairo_account):
    account = kuwait_meter.account
    client.force_login(staff_member(account.utility, role="cashier"))
    cashier = UserFactory(is_staff=True)
    mine = payments.counter_payment_record(account=account, amount=Decimal("1"), cashier=cashier)
    other = ConsumerAccountFactory(utility=account.utility)
    payments.counter_payment_record(account=other, amount=Decimal("1"), cashier=cashier)

    for term in ("+965 5000 1234", "KWM0042001", mine.receipt_number):
        response = client.get(reverse("admin:billing_topup_changelist"), {"q": term})
        assert [t.pk for t in response.context["cl"].result_list] == [mine.pk], term
    assert TopUp.objects.count() == 2
    page = client.get(reverse("admin:billing_topup_changelist")).content.decode()
    assert "1.000 KWD" in page and " +03" in page  # currency decimals, the utility's zone


def test_every_key_is_an_index_lookup_not_a_scan_of_the_accounts(kuwait_meter):
    """Thousands of accounts, meters and top-ups: each of the search's queries is answered
    through an index (PostgreSQL's plan), for a mobile, a serial, a receipt or a consumer ID."""
    import json

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import ConsumerAccount
    from billing.search import account_ids_find
    from meters.models import Meter

    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    utility = kuwait_meter.utility
    accounts = ConsumerAccount.objects.bulk_create(
        ConsumerAccount(
            utility=utility, consumer_id=f"H{n:06d}", registered_mobile=f"+9656{n:07d}", name="H"
        )
        for n in range(20000)
    )
    Meter.objects.bulk_create(
        Meter(utility=utility, serial=f"H{n:07d}", account=account, rated_capacity_kw=10)
        for n, account in enumerate(accounts)
    )
    with connection.cursor() as cursor:
        for table in ("accounts_consumeraccount", "meters_meter", "billing_topup"):
            cursor.execute(f"ANALYZE {table}")

    with CaptureQueriesContext(connection) as queries:
        found = account_ids_find(term="+965 5000 1234", utility_ids=[utility.pk])

    def scans(node):
        yield node["Node Type"], node.get("Relation Name")
        for child in node.get("Plans", []):
            yield from scans(child)

    big = {"accounts_consumeraccount", "meters_meter"}
    for query in queries.captured_queries:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {query['sql']}")
            raw = cursor.fetchone()[0]
        plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
        seq = [rel for kind, rel in scans(plan) if kind == "Seq Scan" and rel in big]
        assert seq == [], query["sql"]
    assert found == [kuwait_meter.account_id]
