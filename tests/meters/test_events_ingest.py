"""The head-end sends meter events: good ones are stored once, every bad one is listed with its
reason, a batch sent twice changes nothing, and nothing of a failed batch is kept."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from meters.events import CODES, MAX_EVENTS, supply_periods_fold
from meters.models import IngestBatch, Meter, MeterEvent, SupplyPeriod
from meters.signals import meter_events_stored
from tests.accounts.factories import UserFactory
from tests.meters.factories import MeterFactory, egypt, head_end_token

URL = "/api/v1/headend/events/"
AT = "2026-11-01T10:00:00+03:00"


@pytest.fixture
def meter(db):
    return MeterFactory(serial="KW-0001")


@pytest.fixture
def hes(make_api, meter):
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    return api


@pytest.fixture
def sent():
    """What meter_events_stored delivered, call by call."""
    calls = []

    def receiver(sender, *, utility, events, **kwargs):
        calls.append((utility, events))

    meter_events_stored.connect(receiver, sender=MeterEvent, weak=False)
    yield calls
    meter_events_stored.disconnect(receiver, sender=MeterEvent)


def post(hes, body, content_type="application/json"):
    """As the head-end posts. The outage detector's on-commit wake-up is not run: what the
    batch stored (and the receivers wrote inside it) is what these tests look at, with the
    supply periods the detector's first step folds from it."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    with hes._capture(execute=False):
        response = hes.client.post(URL, data=data, content_type=content_type)
    for utility_id in Meter.objects.values_list("utility_id", flat=True).distinct():
        supply_periods_fold(utility_id=utility_id)
    return response


def event(kind="power_off", at=AT, meter="KW-0001", **extra):
    return {"meter": meter, "kind": kind, "occurred_at": at, **extra}


def test_it_stores_good_events_and_reports_each_bad_one(hes, meter):
    removed = MeterFactory(utility=meter.utility, serial="KW-GONE", status=Meter.Status.REMOVED)
    MeterFactory(utility=meter.utility, serial="KW-0002")
    future = (timezone.now() + timedelta(minutes=10)).isoformat()
    body = {
        "batch_id": "hes-42",
        "events": [
            event("power_off", "2026-11-01T09:00:00+03:00", id="ev-1"),  # 0 stored
            {"meter": "KW-0001", "code": "3.12.29.212", "occurred_at": AT},  # 1 stored (cover)
            event("overload", AT, details={"load_kw": 7.25}),  # 2 stored
            event("power_off", AT, meter="NO-SUCH"),  # 3
            event("explosion"),  # 4
            {"meter": "KW-0001", "code": "9.9.9.9", "occurred_at": AT},  # 5
            event("power_on", AT, code="3.26.0.85"),  # 6 conflicting
            event("power_off", "2026-11-01T10:00:00"),  # 7 no offset
            event("power_off", "1999-12-01T10:00:00+00:00"),  # 8
            event("power_off", future),  # 9
            event("power_off", "2019-06-01T10:00:00+00:00"),  # 10 before installation
            event("power_off", AT, meter="KW-GONE"),  # 11
            event("power_off", "2026-11-01T09:00:00+03:00"),  # 12 same as 0
            event("cover_open", "2026-11-01T11:00:00+03:00", id="ev-1"),  # 13 same id as 0
            event("power_on", AT, meter="KW-0002"),  # 14 nothing failed before
            event("power_on", AT, off_since="2026-11-01T11:00:00+03:00"),  # 15
            event("power_off", "2026-11-01T08:00:00+03:00", off_since=AT),  # 16 not on power_on
            event("power_on", AT, off_since="2019-01-01T00:00:00+00:00"),  # 17
            "not an event",  # 18
            event("relay_open", AT, id="x" * 65),  # 19
            event("relay_open", AT, details={"blob": "x" * 3000}),  # 20
            event("relay_open", AT, details=["not", "an", "object"]),  # 21
        ],
    }

    response = post(hes, body)

    assert response.status_code == 200, response.json()
    result = response.json()
    assert (result["events"], result["stored"], result["duplicates"], result["rejected"]) == (
        22,
        3,
        0,
        19,
    )
    reasons = {r["index"]: r["reason"] for r in result["rejections"]}
    assert reasons == {
        3: "unknown_meter",
        4: "unknown_kind",
        5: "unknown_kind",
        6: "conflicting_kind",
        7: "bad_timestamp",
        8: "out_of_range",
        9: "in_future",
        10: "before_installation",
        11: "meter_removed",
        12: "duplicate_in_batch",
        13: "duplicate_in_batch",
        14: "restore_without_failure",
        15: "bad_off_since",
        16: "bad_off_since",
        17: "bad_off_since",
        18: "malformed",
        19: "malformed",
        20: "malformed",
        21: "malformed",
    }
    assert [r["index"] for r in result["rejections"]] == sorted(reasons)
    assert all(r["message"] for r in result["rejections"])
    assert result["rejections"][11] == {
        "index": 14,
        "meter": "KW-0002",
        "kind": "power_on",
        "occurred_at": AT,
        "reason": "restore_without_failure",
        "message": result["rejections"][11]["message"],
    }
    stored = sorted(
        MeterEvent.objects.filter(meter=meter).values_list("kind", "code", "external_id", "details")
    )
    assert stored == [
        ("cover_open", "3.12.29.212", "", {}),
        ("overload", "", "", {"load_kw": 7.25}),
        ("power_off", "", "ev-1", {}),
    ]
    assert not MeterEvent.objects.exclude(meter=meter).exists()
    batch = IngestBatch.objects.get(pk=result["batch_id"])
    assert (batch.source, batch.external_id, batch.readings, batch.stored, batch.rejected) == (
        "events",
        "hes-42",
        22,
        3,
        19,
    )
    assert removed.pk  # its event was refused, not stored


def test_a_meter_of_another_utility_is_answered_as_an_unknown_one(hes, meter):
    MeterFactory(utility=egypt(), serial="KW-ELSEWHERE")  # another utility's meter
    body = {
        "events": [
            event(meter="KW-ELSEWHERE"),
            event(meter="KW-NEVER"),
            event(at="2026-11-01T08:00:00+03:00"),
        ]
    }

    result = post(hes, body).json()

    foreign, unknown = result["rejections"]
    assert foreign.pop("meter") == "KW-ELSEWHERE" and unknown.pop("meter") == "KW-NEVER"
    foreign.pop("index"), unknown.pop("index")
    assert foreign == unknown
    assert foreign["reason"] == "unknown_meter"
    assert not MeterEvent.objects.exclude(meter=meter).exists()


def test_the_same_batch_twice_stores_nothing_twice_and_signals_once(hes, meter, sent):
    body = {
        "events": [
            event("power_off", "2026-11-01T10:00:00+03:00", id="a"),
            event("power_on", "2026-11-01T12:00:00+03:00", id="b"),
            event("cover_open", "2026-11-01T12:05:00+03:00"),
        ]
    }
    first = post(hes, body).json()
    period = SupplyPeriod.objects.get(meter=meter)

    again = post(hes, body)
    # The head-end's ids name the events even when it resends them with another time.
    moved = post(
        hes,
        {
            "events": [
                event("power_off", "2026-11-01T10:01:00+03:00", id="a"),
                event("power_on", "2026-11-01T12:01:00+03:00", id="b"),
            ]
        },
    )

    assert (first["stored"], first["duplicates"]) == (3, 0)
    assert again.status_code == 200
    assert (again.json()["stored"], again.json()["duplicates"], again.json()["rejected"]) == (
        0,
        3,
        0,
    )
    assert (moved.json()["stored"], moved.json()["duplicates"]) == (0, 2)
    assert MeterEvent.objects.count() == 3
    unchanged = SupplyPeriod.objects.get(meter=meter)
    assert (unchanged.pk, unchanged.updated_at, unchanged.on_at) == (
        period.pk,
        period.updated_at,
        period.on_at,
    )
    assert len(sent) == 1
    assert IngestBatch.objects.filter(source="events").count() == 3


def test_the_signal_carries_only_the_new_events(hes, meter, sent):
    post(hes, {"events": [event("cover_open", AT), event("bypass", AT)]})

    post(
        hes,
        {
            "events": [
                event("bypass", AT),
                {
                    "meter": "KW-0001",
                    "code": "0.15.261.139",
                    "occurred_at": AT,
                    "id": "hes-9",
                    "details": {"load_kw": 9.5},
                },
            ]
        },
    )

    utility, events = sent[-1]
    assert utility == meter.utility
    [new] = events
    stored = MeterEvent.objects.get(kind="overload")
    assert (new.pk, new.meter_id, new.kind, new.occurred_at, new.code, new.external_id) == (
        stored.pk,
        meter.pk,
        "overload",
        stored.occurred_at,
        "0.15.261.139",
        "hes-9",
    )
    assert new.details == {"load_kw": 9.5}
    assert [e.kind for e in sent[0][1]] == ["cover_open", "bypass"]


def test_a_failing_receiver_leaves_nothing_of_the_batch(hes, meter):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver failed after the inserts")

    meter_events_stored.connect(broken, sender=MeterEvent, weak=False)
    try:
        with pytest.raises(RuntimeError):
            post(hes, {"events": [event("power_off"), event("cover_open"), event("nope")]})
    finally:
        meter_events_stored.disconnect(broken, sender=MeterEvent)

    assert not MeterEvent.objects.exists()
    assert not SupplyPeriod.objects.exists()
    assert not IngestBatch.objects.exists()


def test_codes_are_taken_for_their_kind(hes, meter):
    body = {
        "events": [
            {"meter": "KW-0001", "code": "3.26.0.85", "occurred_at": "2026-11-01T10:00:00Z"},
            {
                "meter": "KW-0001",
                "kind": "power_on",
                "code": "3.26.0.216",
                "occurred_at": "2026-11-01T12:00:00Z",
            },
        ]
    }

    result = post(hes, body).json()

    assert result["stored"] == 2
    assert set(MeterEvent.objects.values_list("kind", "code")) == {
        ("power_off", "3.26.0.85"),
        ("power_on", "3.26.0.216"),
    }


def test_every_row_refused_is_a_400_with_the_rejections(hes, meter):
    response = post(hes, {"events": [event(meter="NO-SUCH"), event("explosion")]})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "all_rejected"
    assert [r["reason"] for r in error["rejections"]] == ["unknown_meter", "unknown_kind"]
    assert not MeterEvent.objects.exists()


@pytest.mark.parametrize("body", [{"events": []}, {}, {"batch_id": "x"}])
def test_an_empty_batch_is_refused(hes, body):
    response = post(hes, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_batch"


def test_only_json_is_read(hes):
    response = post(hes, "meter,kind,occurred_at\nKW-0001,power_off,2026-11-01T10:00Z", "text/csv")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"events": {"a": 1}}', b"{not json"])
def test_a_body_that_is_not_a_batch_is_refused_whole(hes, body):
    response = post(hes, body)

    assert response.status_code == 400
    assert not IngestBatch.objects.exists()


def test_it_needs_a_head_end_token(make_api, meter):
    anonymous = make_api()
    consumer = make_api(UserFactory())

    for api in (anonymous, consumer):
        response = api.client.post(
            URL, data=json.dumps({"events": [event()]}), content_type="application/json"
        )
        assert response.status_code == 401
    assert not MeterEvent.objects.exists()


def test_a_batch_of_the_largest_size_is_taken_and_one_more_is_refused(hes, meter):
    start = timezone.now().replace(microsecond=0) - timedelta(days=3)
    # One meter failing again and again: every event stored, one supply period (repeats ignored).
    events = [
        {
            "meter": "KW-0001",
            "kind": "power_off",
            "occurred_at": (start + timedelta(seconds=i)).isoformat(),
        }
        for i in range(MAX_EVENTS)
    ]

    too_many = post(hes, {"events": [*events, {}]})
    response = post(hes, {"events": events})

    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "too_many_events"
    assert response.status_code == 200
    assert response.json()["stored"] == MAX_EVENTS
    assert MeterEvent.objects.count() == MAX_EVENTS
    [period] = SupplyPeriod.objects.all()
    assert (period.off_at, period.on_at) == (start, None)


def test_the_docs_list_the_same_codes_as_the_code(settings):
    doc = (Path(settings.BASE_DIR) / "docs" / "events.md").read_text()
    section = doc.split("## Event kinds and codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([0-9.]+)` \| `([a-z_]+)` \|", section, flags=re.MULTILINE)

    assert dict(rows) == CODES
    assert len(rows) == len(CODES)
    assert {kind for _, kind in rows} == set(MeterEvent.Kind.values)


def test_ids_and_details_are_stored_as_sent(hes, meter):
    tricky = 'hes "7" \\ {a,b} NULL'
    details = {"note": 'a "quoted" back\\slash, {brace}', "load_kw": 12}

    result = post(hes, {"events": [event("overload", AT, id=tricky, details=details)]})

    assert result.json()["stored"] == 1
    stored = MeterEvent.objects.get()
    assert (stored.external_id, stored.details) == (tricky, details)
