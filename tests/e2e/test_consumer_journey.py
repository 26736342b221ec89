"""A consumer's first day, over real HTTP: sign in, link two accounts, find every id from the links
alone, unlink one, register a phone."""

from __future__ import annotations

import pytest
import requests

from accounts.models import AccountLink
from notifications.models import Device
from tests.accounts.factories import ConsumerAccountFactory, UtilityFactory
from tests.conftest import CODE
from tests.meters.factories import MeterFactory

pytestmark = pytest.mark.django_db(transaction=True)

MY_PHONE = "+96560001111"


def code_sent_to(gateway, number: str, count: int) -> str:
    messages = gateway.wait_for(count)
    return CODE.search([m for m in messages if m["to"] == number][-1]["text"]).group(1)


def test_sign_in_link_two_accounts_unlink_one_and_register_a_device(live_server, sms_gateway):
    utility = UtilityFactory()
    home = ConsumerAccountFactory(
        utility=utility, consumer_id="10020030", registered_mobile="+96550001231"
    )
    parents = ConsumerAccountFactory(
        utility=utility, consumer_id="10020040", registered_mobile="+96566002345"
    )
    meters = {a.consumer_id: MeterFactory(utility=utility, account=a) for a in (home, parents)}
    http = requests.Session()
    url = live_server.url + "/api/v1"

    utilities = http.get(f"{url}/utilities/").json()
    assert [u["code"] for u in utilities] == ["kw-mew"]

    # Sign in: the code goes to the number typed.
    start = http.post(f"{url}/auth/code/", json={"phone": MY_PHONE, "language": "en"})
    assert start.status_code == 202
    tokens = http.post(
        f"{url}/auth/token/",
        json={
            "challenge_id": start.json()["challenge_id"],
            "code": code_sent_to(sms_gateway, MY_PHONE, 1),
        },
    )
    assert tokens.status_code == 200
    http.headers["Authorization"] = f"Bearer {tokens.json()['access']}"

    # Link two accounts: each code goes to that account's registered mobile, shown masked.
    linked = []
    for count, account in enumerate([home, parents], start=2):
        started = http.post(
            f"{url}/links/", json={"utility": "kw-mew", "consumer_id": account.consumer_id}
        )
        assert started.status_code == 202
        # Known and unknown consumer ids answer alike: no masked number before the code is proved.
        assert set(started.json()) == {"challenge_id", "expires_in", "resend_in"}
        confirmed = http.post(
            f"{url}/links/confirm/",
            json={
                "challenge_id": started.json()["challenge_id"],
                "code": code_sent_to(sms_gateway, account.registered_mobile, count),
            },
        )
        assert confirmed.status_code == 201, confirmed.json()
        linked.append(confirmed.json())
    assert [m["to"] for m in sms_gateway.messages] == [
        MY_PHONE,
        home.registered_mobile,
        parents.registered_mobile,
    ]

    listed = http.get(f"{url}/links/").json()
    assert [item["consumer_id"] for item in listed] == ["10020030", "10020040"]
    # Every id the other calls need comes from the links list: no guessing.
    for item in listed:
        assert item["access"] == "full"
        balance = http.get(f"{url}/accounts/{item['account']}/balance/")
        assert balance.status_code == 200
        assert balance.json()["consumer_id"] == item["consumer_id"]
        [meter] = item["meters"]
        assert meter["serial"] == meters[item["consumer_id"]].serial and meter["current"]
        usage = http.get(
            f"{url}/meters/{meter['id']}/consumption/",
            params={"period_from": "2026-11-01", "period_to": "2026-11-02"},
        )
        assert usage.status_code == 200
        assert usage.json()["tenancies"][0]["account"] == item["account"]

    assert http.delete(f"{url}/links/{linked[1]['id']}/").status_code == 204
    assert [item["consumer_id"] for item in http.get(f"{url}/links/").json()] == ["10020030"]
    assert AccountLink.objects.filter(unlinked_at__isnull=True).count() == 1

    device = http.post(
        f"{url}/devices/",
        json={
            "token": "fcm-" + "z" * 140,
            "platform": "ios",
            "app_version": "1.0.0",
            "language": "ar",
        },
    )
    assert device.status_code == 201
    assert Device.objects.get().user.phone == MY_PHONE

    logout = http.post(f"{url}/auth/logout/", json={"refresh": tokens.json()["refresh"]})
    assert logout.status_code == 204
    again = http.post(f"{url}/auth/token/refresh/", json={"refresh": tokens.json()["refresh"]})
    assert again.status_code == 401
