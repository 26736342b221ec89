"""Where the router sends reads, with lag readings given to it: the decisions alone. The real
standby's tests (test_standby.py) show reads served by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import quote

import dj_database_url
import pytest
from django.core.exceptions import MiddlewareNotUsed
from django.db import transaction

from billing.models import BillingPolicy
from billing.relay import policy_for
from core.replicas import (
    ReplicaReadMiddleware,
    ReplicaRouter,
    replica_pick,
    replica_reads,
    writer_forget,
    writer_recent,
)
from core.replicas import lag as replica_lag
from tests.accounts.factories import AccountLinkFactory, UserFactory

router = ReplicaRouter()


@pytest.fixture
def two_replicas(settings):
    """Two replica aliases with fresh lag readings, set by each test (nothing is measured)."""
    settings.REPLICA_ALIASES = ["replica1", "replica2"]
    settings.REPLICA_MAX_LAG_SECONDS = 5
    settings.DATABASE_ROUTERS = ["core.replicas.ReplicaRouter"]
    yield lambda **lags: replica_lag._readings.update(
        {alias: replica_lag._Reading(lag=lag, at=time.monotonic()) for alias, lag in lags.items()}
    )
    replica_lag.replica_readings_forget()


def test_a_replica_under_the_lag_limit_is_picked_and_no_other():
    lags = {"replica1": 6.0, "replica2": 0.4, "replica3": None}
    assert replica_pick(lags, limit=5) == "replica2"
    assert replica_pick({"replica1": 6.0, "replica3": None}, limit=5) is None
    assert replica_pick({"replica1": 5.0}, limit=5) is None
    assert replica_pick({}, limit=5) is None


def test_outside_a_read_scope_everything_reads_the_primary(two_replicas):
    two_replicas(replica1=0.0, replica2=0.0)
    assert router.db_for_read(None) == "default"
    assert router.db_for_write(None) == "default"


def test_in_a_read_scope_reads_go_to_a_fresh_replica_and_stay_there(two_replicas):
    two_replicas(replica1=9.0, replica2=0.2)
    with replica_reads():
        assert router.db_for_read(None) == "replica2"
        two_replicas(replica1=0.0, replica2=9.0)
        # One replica for the whole request: its reads agree with each other.
        assert router.db_for_read(None) == "replica2"


def test_with_every_replica_lagging_or_down_reads_go_to_the_primary(two_replicas):
    two_replicas(replica1=30.0, replica2=None)
    with replica_reads():
        assert router.db_for_read(None) == "default"


def test_after_a_write_the_scope_reads_the_primary(two_replicas, transactional_db):
    two_replicas(replica1=0.0, replica2=0.0)
    with replica_reads() as scope:
        assert router.db_for_write(None) == "default"
        assert not scope.wrote  # asked where a write would go: not a write
        UserFactory()
        assert router.db_for_read(None) == "default"
    assert scope.wrote


def test_a_read_inside_a_transaction_on_the_primary_stays_there(two_replicas, transactional_db):
    two_replicas(replica1=0.0, replica2=0.0)
    with replica_reads(), transaction.atomic():
        assert router.db_for_read(None) == "default"


def test_migrations_run_on_the_primary_only():
    assert router.allow_migrate("default", "billing")
    assert not router.allow_migrate("replica1", "billing")
    assert router.allow_relation(object(), object())


def test_without_replicas_the_middleware_is_not_installed(settings):
    settings.REPLICA_ALIASES = []
    with pytest.raises(MiddlewareNotUsed):
        ReplicaReadMiddleware(lambda request: None)


# --- Requests ------------------------------------------------------------------------------------


@pytest.fixture
def consumer(two_replicas, db):
    two_replicas(replica1=0.0, replica2=0.0)
    link = AccountLinkFactory()
    policy_for(link.account.utility)  # made by the first balance read of a utility: a write
    yield link
    writer_forget(user_id=str(link.user_id))


def test_a_consumers_balance_read_is_replica_eligible(consumer, make_api):
    response = make_api(consumer.user).get(f"/api/v1/accounts/{consumer.account_id}/balance/")

    assert response.status_code == 200
    assert response.wsgi_request.replica_scope.eligible
    assert not writer_recent(user_id=str(consumer.user_id))


def test_after_a_top_up_the_consumers_reads_go_to_the_primary(consumer, make_api):
    api = make_api(consumer.user)
    started = api.post(
        f"/api/v1/accounts/{consumer.account_id}/topups/",
        {"amount": "1.500", "channel": "app"},
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert started.status_code == 201, started.json()
    assert writer_recent(user_id=str(consumer.user_id))

    balance = api.get(f"/api/v1/accounts/{consumer.account_id}/balance/")
    assert balance.status_code == 200
    assert not balance.wsgi_request.replica_scope.eligible

    # Another consumer, who wrote nothing, still reads a replica.
    other = AccountLinkFactory()
    theirs = make_api(other.user).get(f"/api/v1/accounts/{other.account_id}/balance/")
    assert theirs.wsgi_request.replica_scope.eligible


def test_a_read_that_writes_marks_its_reader(consumer, make_api):
    # The first balance read of a utility makes its billing policy (billing.relay.policy_for).
    BillingPolicy.objects.all().delete()
    response = make_api(consumer.user).get(f"/api/v1/accounts/{consumer.account_id}/balance/")
    assert response.status_code == 200
    assert response.wsgi_request.replica_scope.wrote
    assert writer_recent(user_id=str(consumer.user_id))


def test_a_failed_write_marks_the_writer_too(consumer, make_api):
    response = make_api(consumer.user).post(
        f"/api/v1/accounts/{consumer.account_id}/topups/", {"amount": "1.500"}
    )
    assert response.status_code == 400  # no idempotency key
    assert writer_recent(user_id=str(consumer.user_id))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/accounts/{account}/topups/00000000-0000-0000-0000-000000000000/",  # money status
        "/api/v1/devices/",
        "/api/v1/me/",
    ],
)
def test_reads_outside_the_consumer_read_views_go_to_the_primary(consumer, make_api, path):
    response = make_api(consumer.user).get(path.format(account=consumer.account_id))
    assert response.status_code in (200, 404)
    assert not response.wsgi_request.replica_scope.eligible


def test_an_anonymous_or_forged_read_goes_to_the_primary(consumer, make_api):
    path = f"/api/v1/accounts/{consumer.account_id}/balance/"
    anonymous = make_api().get(path)
    forged = make_api().get(path, HTTP_AUTHORIZATION="Bearer not.a.token")

    assert anonymous.status_code == forged.status_code == 401
    assert not anonymous.wsgi_request.replica_scope.eligible
    assert not forged.wsgi_request.replica_scope.eligible


def test_the_admin_reads_the_primary(two_replicas, client, db):
    staff = UserFactory(username="staff-reader", phone=None, is_staff=True, is_superuser=True)
    client.force_login(staff)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert not response.wsgi_request.replica_scope.eligible


# --- Settings and measuring, in a process of their own ---------------------------------------------


def _settings_process(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )


def test_each_replica_url_becomes_an_alias_and_none_changes_nothing():
    show = (
        "import json; from config import settings as s; print(json.dumps({'aliases': "
        "s.REPLICA_ALIASES, 'routers': getattr(s, 'DATABASE_ROUTERS', []), 'databases': "
        "{a: [d['HOST'], d['PORT'], d['NAME'], d['OPTIONS'].get('application_name')] "
        "for a, d in s.DATABASES.items() if a != 'default'}}))"
    )
    two = _settings_process(
        show,
        DATABASE_URL="postgres://app@10.0.0.1:5432/meters",
        DATABASE_REPLICA_URLS=" postgres://app@10.0.0.2:5432/meters, postgres://app@10.0.0.3:6432/meters,",
    )
    none = _settings_process(show, DATABASE_REPLICA_URLS="")

    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout.strip().splitlines()[-1]) == {
        "aliases": ["replica1", "replica2"],
        "routers": ["core.replicas.ReplicaRouter"],
        "databases": {
            "replica1": ["10.0.0.2", 5432, "meters", "smartmeter-replica1"],
            "replica2": ["10.0.0.3", 6432, "meters", "smartmeter-replica2"],
        },
    }
    assert none.returncode == 0, none.stderr
    assert json.loads(none.stdout.strip().splitlines()[-1]) == {
        "aliases": [],
        "routers": [],
        "databases": {},
    }


MEASURE_TWICE = (
    "import django; django.setup(); from core.replicas import replica_lag_seconds, "
    "replica_choose; print(replica_lag_seconds()); print(replica_lag_seconds()); "
    "print(replica_choose())"
)


def test_an_unreachable_replica_has_no_lag_is_not_read_and_is_not_asked_again_at_once():
    # Nothing listens on port 9 of this machine: the connection is refused at once.
    run = _settings_process(
        MEASURE_TWICE, DATABASE_REPLICA_URLS="postgres://root@127.0.0.1:9/smartmeter"
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["{'replica1': None}", "{'replica1': None}", "None"]
    assert run.stderr.count("Replica replica1 is unreachable") == 1


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="PostgreSQL only"
)
def test_a_replica_url_that_names_a_primary_is_never_read():
    primary = dj_database_url.parse(os.environ["DATABASE_URL"])
    url = "postgres://{}:{}@{}:{}/postgres".format(
        *(quote(str(primary[key] or "")) for key in ("USER", "PASSWORD", "HOST", "PORT"))
    )
    run = _settings_process(MEASURE_TWICE, DATABASE_REPLICA_URLS=url)

    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["{'replica1': None}", "{'replica1': None}", "None"]
    assert "Replica replica1 is not a streaming standby" in run.stderr


def test_wal_positions_compare_as_numbers_not_as_text():
    from core.replicas.lag import lsn_value

    assert lsn_value("0/16B3748") < lsn_value("0/16B3750")
    assert lsn_value("0/FFFFFFFF") < lsn_value("1/0")  # "0/F…" > "1/0" as text
    assert lsn_value("A/0") > lsn_value("9/FFFFFFFF")
    assert lsn_value("16/B374D848") == (0x16 << 32) + 0xB374D848
