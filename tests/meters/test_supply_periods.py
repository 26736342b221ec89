"""A meter's supply periods (off from … to …) follow its own events in time order, whatever order
they arrive in: late failures and restorations move, split or close the periods, keeping the rows
(and what links to them) where they can and leaving unchanged ones unwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from meters.events import supply_periods_fold, supply_periods_rebuild
from meters.models import MeterEvent, SupplyPeriod
from tests.meters.factories import MeterFactory, head_end_token

URL = "/api/v1/headend/events/"


@pytest.fixture
def meter(db):
    return MeterFactory(serial="KW-0001")


@pytest.fixture
def hes(make_api, meter):
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    api.utility_id = meter.utility_id
    return api


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 1, hour, minute, tzinfo=UTC)


def send(hes, *events):
    body = {
        "events": [
            {"meter": "KW-0001", "kind": kind, "occurred_at": when.isoformat(), **extra}
            for kind, when, *more in events
            for extra in [more[0] if more else {}]
        ]
    }
    # The outage detector's on-commit wake-up is not run (it would move the periods out of
    # "new"); only its first step is, the fold of the batch into supply periods.
    with hes._capture(execute=False):
        response = hes.client.post(URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 400), response.content
    supply_periods_fold(utility_id=hes.utility_id)
    return response.json()


def periods(meter) -> list[tuple]:
    return [
        (p.off_at, p.on_at) for p in SupplyPeriod.objects.filter(meter=meter).order_by("off_at")
    ]


def test_a_restoration_sent_before_its_failure_makes_one_period(hes, meter):
    result = send(hes, ("power_on", at(12)), ("power_off", at(10)))

    assert (result["stored"], result["rejected"]) == (2, 0)
    period = SupplyPeriod.objects.get(meter=meter)
    assert (period.off_at, period.on_at, period.state) == (at(10), at(12), "new")
    assert period.off_event == MeterEvent.objects.get(kind="power_off")
    assert period.on_event == MeterEvent.objects.get(kind="power_on")
    assert period.utility_id == meter.utility_id


def test_a_late_earlier_failure_moves_the_start_of_the_same_period(hes, meter):
    send(hes, ("power_off", at(10)), ("power_on", at(12)))
    before = SupplyPeriod.objects.get(meter=meter)
    SupplyPeriod.objects.filter(pk=before.pk).update(state="outage")

    result = send(hes, ("power_off", at(9)))

    assert result["stored"] == 1
    after = SupplyPeriod.objects.get(meter=meter)
    assert (after.pk, after.off_at, after.on_at) == (before.pk, at(9), at(12))
    assert after.off_event.occurred_at == at(9)
    assert after.state == "new" and after.updated_at > before.updated_at


def test_a_late_restoration_and_failure_inside_a_period_split_it(hes, meter):
    send(hes, ("power_off", at(10)), ("power_on", at(12)))
    before = SupplyPeriod.objects.get(meter=meter)

    result = send(hes, ("power_on", at(10, 30)), ("power_off", at(11)))

    assert (result["stored"], result["rejected"]) == (2, 0)
    assert periods(meter) == [(at(10), at(10, 30)), (at(11), at(12))]
    assert SupplyPeriod.objects.get(off_at=at(10)).pk == before.pk


def test_repeated_failures_while_off_are_one_period(hes, meter):
    send(hes, ("power_off", at(10)), ("power_off", at(10, 30)), ("power_on", at(12)))

    assert periods(meter) == [(at(10), at(12))]
    assert MeterEvent.objects.filter(kind="power_off").count() == 2


def test_an_open_period_is_closed_in_place_by_its_restoration(hes, meter):
    send(hes, ("power_off", at(10)))
    open_period = SupplyPeriod.objects.get(meter=meter)
    assert open_period.on_at is None

    send(hes, ("power_on", at(14)), ("power_off", at(15)))

    assert periods(meter) == [(at(10), at(14)), (at(15), None)]
    assert SupplyPeriod.objects.get(off_at=at(10)).pk == open_period.pk


def test_a_restoration_with_the_meters_own_failure_time_makes_its_period(hes, meter):
    result = send(hes, ("power_on", at(12), {"off_since": at(9).isoformat()}))

    assert result["stored"] == 1
    period = SupplyPeriod.objects.get(meter=meter)
    assert (period.off_at, period.on_at, period.off_event) == (at(9), at(12), None)
    assert MeterEvent.objects.get().details == {"off_since": at(9).isoformat()}


def test_a_second_restoration_without_a_failure_between_is_refused(hes, meter):
    send(hes, ("power_off", at(10)), ("power_on", at(12)))
    # (A late restoration inside 10–12 would be taken: it splits the period, see above.)

    result = send(hes, ("power_on", at(14)), ("power_on", at(13)))

    assert result["error"]["code"] == "all_rejected"
    assert [r["reason"] for r in result["error"]["rejections"]] == [
        "restore_without_failure",
        "restore_without_failure",
    ]
    assert periods(meter) == [(at(10), at(12))]


def test_a_restoration_counts_a_failure_earlier_in_the_same_batch(hes, meter):
    result = send(hes, ("power_on", at(12)), ("power_off", at(10)), ("power_on", at(13)))

    assert [r["reason"] for r in result["rejections"]] == ["restore_without_failure"]
    assert result["rejections"][0]["index"] == 2
    assert periods(meter) == [(at(10), at(12))]


def test_periods_a_late_event_does_not_change_are_not_written(hes, meter):
    send(hes, ("power_off", at(10)), ("power_on", at(12)))
    first = SupplyPeriod.objects.get(meter=meter)
    SupplyPeriod.objects.filter(pk=first.pk).update(state="outage")

    send(hes, ("power_off", at(15)), ("power_on", at(16)))

    kept = SupplyPeriod.objects.get(pk=first.pk)
    assert (kept.state, kept.updated_at) == ("outage", first.updated_at)
    assert periods(meter) == [(at(10), at(12)), (at(15), at(16))]


def test_other_meters_and_other_kinds_make_no_periods(hes, meter):
    other = MeterFactory(utility=meter.utility, serial="KW-0002")

    send(hes, ("cover_open", at(10)), ("relay_open", at(11)))

    assert not SupplyPeriod.objects.exists()
    assert periods(other) == []


def test_the_rebuild_is_idempotent(hes, meter):
    send(hes, ("power_off", at(10)), ("power_on", at(12)), ("power_off", at(13)))
    rows = list(SupplyPeriod.objects.order_by("off_at").values_list("pk", "updated_at"))

    changed = supply_periods_rebuild(earliest={meter.pk: at(0)})

    assert changed == 0
    assert list(SupplyPeriod.objects.order_by("off_at").values_list("pk", "updated_at")) == rows


def test_the_rebuild_restores_periods_lost_or_wrong(hes, meter):
    send(hes, ("power_off", at(10)), ("power_on", at(12)), ("power_off", at(13)))
    SupplyPeriod.objects.filter(off_at=at(13)).delete()
    SupplyPeriod.objects.filter(off_at=at(10)).update(on_at=at(11))

    changed = supply_periods_rebuild(earliest={meter.pk: at(0)})

    assert changed == 2
    assert periods(meter) == [(at(10), at(12)), (at(13), None)]


def test_off_since_is_taken_from_its_field_only(hes, meter):
    result = send(hes, ("power_on", at(12), {"details": {"off_since": at(9).isoformat()}}))

    assert result["error"]["rejections"][0]["reason"] == "restore_without_failure"
    assert not SupplyPeriod.objects.exists()
