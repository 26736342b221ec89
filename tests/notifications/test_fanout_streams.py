"""A streamed fan-out (issue 19): opened in the event's transaction, its audience written a chunk
at a time, each chunk one INSERT … SELECT whose rows are pushed as soon as it commits. Nothing is
written or pushed twice, a person already alerted under the key keeps that alert, and staff see
how far it has written."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from notifications import selectors
from notifications.models import Fanout, Notification
from notifications.services import alert_create, fanout_finish, fanout_open, fanout_write
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.notifications.factories import DeviceFactory

pytestmark = pytest.mark.django_db
CONTEXT = {"area": "Salmiya, block 4", "outage_id": 41}
KEY = "outage:41:started"
TITLES = {
    "en": "Power outage in your area",
    "ar": "انقطاع الكهرباء في منطقتك",
    "hi": "आपके क्षेत्र में बिजली गुल है",
}


def _open(key: str = KEY) -> Fanout:
    fanout, created = fanout_open(
        category="outage_unplanned", dedupe_key=key, context=CONTEXT, utility=UtilityFactory()
    )
    assert created
    return fanout


def test_each_chunk_is_pushed_once_it_commits_in_each_reader_s_language(
    fcm_server, django_capture_on_commit_callbacks
):
    users = [UserFactory(language=("en", "ar", "hi")[n % 3]) for n in range(6)]
    devices = [DeviceFactory(user=u) for u in users]
    fanout = _open()
    assert fanout.state == Fanout.State.WRITING and not Notification.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert fanout_write(fanout=fanout, user_ids=[u.pk for u in users[:4]], through=4) == 4
    # The first chunk's pushes went while the rest was not yet written.
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(d.token for d in devices[:4])
    progress = selectors.fanout_progress(fanout=fanout)
    assert progress["sent"] == 4 and fanout.audience_size == 4 and fanout.written_through == 4

    with django_capture_on_commit_callbacks(execute=True):
        written = fanout_write(
            fanout=fanout,
            user_ids=User.objects.filter(pk__in=[u.pk for u in users[4:]]).values_list(
                "pk", flat=True
            ),
            through=6,
        )
        fanout_finish(fanout=fanout)

    assert written == 2 and fanout.state == Fanout.State.WRITTEN and fanout.audience_size == 6
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(d.token for d in devices)
    for device in devices:
        [message] = fcm_server.messages_to(device.token)
        assert message["notification"]["title"] == TITLES[device.user.language]
    row = Notification.objects.get(user=users[1])
    assert (row.language, row.title, row.fanout_id) == ("ar", TITLES["ar"], fanout.pk)
    assert row.data == fanout.data and row.data["outage_id"] == "41"


def test_a_person_in_two_chunks_or_already_alerted_is_written_and_pushed_once(
    fcm_server, django_capture_on_commit_callbacks
):
    alerted, twice, other = (DeviceFactory().user for _ in range(3))
    with django_capture_on_commit_callbacks(execute=True):
        alert_create(
            user=alerted,
            category="outage_unplanned",
            dedupe_key=KEY,
            context=CONTEXT,
            utility=UtilityFactory(),
        )
    fanout = _open()

    with django_capture_on_commit_callbacks(execute=True):
        first = fanout_write(fanout=fanout, user_ids=[alerted.pk, twice.pk, 10**9], through=1)
        second = fanout_write(fanout=fanout, user_ids=[twice.pk, other.pk], through=2)

    assert (first, second) == (1, 1)  # an unknown id is skipped
    assert Notification.objects.filter(dedupe_key=KEY).count() == 3
    assert Notification.objects.filter(fanout=fanout).count() == 2
    assert len(fcm_server.accepted) == 3 and fcm_server.duplicates == 0


def test_a_chunk_is_one_insert_whatever_its_size(django_capture_on_commit_callbacks):
    def insert_statements(size: int, key: str) -> int:
        users = User.objects.bulk_create([UserFactory.build() for _ in range(size)])
        fanout = _open(key)
        with (
            CaptureQueriesContext(connection) as queries,
            django_capture_on_commit_callbacks(execute=False),
        ):
            assert fanout_write(fanout=fanout, user_ids=[u.pk for u in users], through=1)
        inserts = [q for q in queries if q["sql"].startswith("INSERT")]
        assert all('"notifications_notification"' in q["sql"] for q in inserts)
        return len(queries), len(inserts)

    assert insert_statements(3, "k:small") == insert_statements(300, "k:large")
    assert insert_statements(30, "k:other")[1] == 1


def test_a_key_opened_again_writes_nothing_more_and_a_finished_one_refuses_a_chunk():
    users = UserFactory.create_batch(2)
    fanout = _open()
    fanout_finish(fanout=fanout, state=Fanout.State.STOPPED)

    again, created = fanout_open(category="outage_unplanned", dedupe_key=KEY, context=CONTEXT)
    assert not created and again.pk == fanout.pk and again.state == Fanout.State.STOPPED
    with pytest.raises(ValueError, match="stopped"):
        fanout_write(fanout=again, user_ids=[u.pk for u in users], through=2)
    assert not Notification.objects.exists()


def test_staff_see_a_stream_still_writing_in_the_admin(admin_client, fcm_server):
    fanout = _open()
    fanout_write(fanout=fanout, user_ids=[u.pk for u in UserFactory.create_batch(3)], through=3)

    page = admin_client.get(f"/admin/notifications/fanout/{fanout.pk}/change/")
    assert page.status_code == 200
    assert "writing (3 written so far): 0 sent, 3 waiting" in page.content.decode()

    fanout_finish(fanout=fanout, state=Fanout.State.STOPPED)
    listing = admin_client.get("/admin/notifications/fanout/")
    assert "stopped, no longer holds (3 were written)" in listing.content.decode()
