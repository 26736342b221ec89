"""Consumer reads against a real streaming standby (tests/replicas/conftest.py): served by it,
kept off it while it lags, and kept off it for a consumer who has just topped up."""

from __future__ import annotations

import time

from django.db import connections
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from billing.models import TopUp
from billing.relay import policy_for
from core.replicas import LAG_SQL, replica_lag_seconds, writer_forget, writer_recent
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.billing.test_topups import webhook
from tests.notifications.factories import NotificationFactory

INBOX = "/api/v1/notifications/"


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _tables(queries) -> str:
    return " ".join(query["sql"] for query in queries if query["sql"] != LAG_SQL)


def test_a_consumers_inbox_is_read_from_the_standby(standby, make_api):
    user = UserFactory()
    notification = NotificationFactory(user=user)
    api = make_api(user)
    standby.caught_up()

    with (
        CaptureQueriesContext(connections["default"]) as on_primary,
        CaptureQueriesContext(connections[standby.alias]) as on_standby,
    ):
        response = api.get(INBOX)

    assert _ids(response) == [notification.pk]
    assert response.wsgi_request.replica_scope.replica == standby.alias
    assert "notifications_notification" in _tables(on_standby.captured_queries)
    assert "notifications_notification" not in _tables(on_primary.captured_queries)
    # The standby itself saw it: its pg_stat_activity shows the application's connection, in
    # the test database, whose last query read the inbox.
    [(database, last_query)] = standby.application_queries()
    assert database == standby.dbname
    assert "notifications_notification" in last_query


def test_a_lagging_standby_is_skipped(standby, make_api, settings):
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    user = UserFactory()
    older = NotificationFactory(user=user)
    api = make_api(user)
    standby.caught_up()

    with standby.replay_paused():
        newer = NotificationFactory(user=user, title="Written while the standby waits")
        standby.received()  # it holds the write but has not applied it
        deadline = time.monotonic() + 30
        while (replica_lag_seconds()[standby.alias] or 0) < settings.REPLICA_MAX_LAG_SECONDS:
            assert time.monotonic() < deadline, "the paused standby's lag never grew"
            time.sleep(0.05)
        with CaptureQueriesContext(connections[standby.alias]) as on_standby:
            lagging = api.get(INBOX)

    assert _ids(lagging) == [newer.pk, older.pk]  # from the primary: the standby lacks `newer`
    assert lagging.wsgi_request.replica_scope.replica == ""
    assert _tables(on_standby.captured_queries) == ""  # only its lag was asked

    standby.caught_up()
    again = api.get(INBOX)
    assert _ids(again) == [newer.pk, older.pk]
    assert again.wsgi_request.replica_scope.replica == standby.alias


def _prepaid_consumer(make_api):
    """A consumer linked to an account, their API client, and their balance's address."""
    link = AccountLinkFactory()
    policy_for(link.account.utility)  # made now: the balance read that follows only reads
    return link, make_api(link.user), f"/api/v1/accounts/{link.account_id}/balance/"


def _top_up_started(api, link, amount: str) -> TopUp:
    """A top-up the consumer starts in the app (a write of theirs), its payment still to come."""
    started = api.post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        {"amount": amount, "channel": "app"},
        HTTP_IDEMPOTENCY_KEY=f"replica-topup-{amount}",
    )
    assert started.status_code == 201, started.json()
    return TopUp.objects.get(pk=started.json()["topup"]["id"])


def test_a_consumer_who_just_topped_up_reads_the_new_balance_from_the_primary(
    standby, make_api, client, settings
):
    # However stale, the standby counts as usable here: only the consumer's own write keeps
    # their reads off it.
    settings.REPLICA_MAX_LAG_SECONDS = 3600
    link, api, balance_path = _prepaid_consumer(make_api)
    standby.caught_up()

    with standby.replay_paused():
        topup = _top_up_started(api, link, "1.500")
        assert webhook(client, topup).json() == {"status": "credited"}

        fresh = api.get(balance_path)
        assert writer_recent(user_id=str(link.user_id))
        # The mark gone, the same read goes to the standby, which has not applied the top-up.
        writer_forget(user_id=str(link.user_id))
        stale = api.get(balance_path)

    assert fresh.status_code == 200 and fresh.json()["balance"] == "1.500"
    assert fresh.wsgi_request.replica_scope.replica is None  # never offered a replica
    assert stale.wsgi_request.replica_scope.replica == standby.alias
    assert stale.status_code == 200 and stale.json()["balance"] == "0.000"


def test_a_top_up_the_gateway_confirms_later_reads_from_the_primary(
    standby, make_api, client, settings
):
    """The webhook crediting a top-up comes from the gateway, not from the consumer, and may come
    long after their own request's mark ran out: the credit marks every reader of the balance."""
    settings.REPLICA_MAX_LAG_SECONDS = 3600
    link, api, balance_path = _prepaid_consumer(make_api)
    standby.caught_up()

    with standby.replay_paused():
        topup = _top_up_started(api, link, "2.000")
        writer_forget(user_id=str(link.user_id))  # the consumer's own mark has run out
        assert webhook(client, topup).json() == {"status": "credited"}
        assert writer_recent(user_id=str(link.user_id))
        fresh = api.get(balance_path)

    assert fresh.status_code == 200 and fresh.json()["balance"] == "2.000"
    assert fresh.wsgi_request.replica_scope.replica is None


def test_the_metrics_show_the_standbys_lag(standby, client, settings):
    settings.METRICS_TOKEN = "scrape-the-standby"
    settings.METRICS_CACHE_SECONDS = 0
    settings.REPLICA_LAG_CHECK_SECONDS = 0

    def scrape() -> dict[str, dict[str, float]]:
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-the-standby")
        assert response.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
        return {
            name: {s.labels["alias"]: s.value for s in families[name].samples}
            for name in ("smartmeter_replica_up", "smartmeter_replica_lag_seconds")
        }

    standby.caught_up()
    caught_up = scrape()
    with standby.replay_paused():
        NotificationFactory(title="Written while the standby waits")
        standby.received()
        time.sleep(1.2)
        behind = scrape()

    assert caught_up["smartmeter_replica_up"] == {standby.alias: 1.0}
    assert caught_up["smartmeter_replica_lag_seconds"][standby.alias] < 1.0
    assert behind["smartmeter_replica_up"] == {standby.alias: 1.0}
    # It received the write but has not applied it: behind by at least the wait.
    assert behind["smartmeter_replica_lag_seconds"][standby.alias] >= 1.0
