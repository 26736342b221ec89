"""Fixtures of the streamed-notice tests (test_publish_streams.py, test_snapshot_streams.py);
neither is used unless a test asks for it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from accounts.models import AccountLink
from outages.services import stream
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.notifications.factories import DeviceFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of
from tests.outages.streams import CHUNK, PUBLISH, START


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(stream, "NOTICE_STREAM_CHUNK", CHUNK)


@pytest.fixture
def city():
    """Ten meters on one transformer, each its account and its person with a phone; Alice also
    holds the last account (a second chunk's), Bob's share of the first does not receive alerts,
    and a former holder of the second was unlinked."""
    transformer = transformer_of(saudi())
    meters, people = [], []
    for n in range(10):
        meter, (person,) = consumer_on(transformer, language=("en", "ar")[n % 2])
        DeviceFactory(user=person)
        meters.append(meter)
        people.append(person)
    alice = people[0]
    AccountLinkFactory(account=meters[-1].account, user=alice)
    bob = UserFactory()
    DeviceFactory(user=bob)
    AccountLinkFactory(account=meters[0].account, user=bob, receives_alerts=False)
    former = UserFactory()
    AccountLink.objects.create(
        user=former, account=meters[1].account, verified_mobile="x", unlinked_at=PUBLISH
    )
    outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=START,
        planned_end=START + timedelta(hours=4),
        transformers=[transformer],
    )
    return {"outage": outage, "meters": meters, "people": people, "bob": bob, "former": former}
