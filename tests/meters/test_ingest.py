from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from meters.models import IngestBatch, Meter, MeterDay, ReadingCorrection
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.meters.factories import MeterFactory, head_end_token

URL = "/api/v1/headend/readings/"
DAY = "2026-11-01"


@pytest.fixture
def meter(db):
    return MeterFactory(serial="KW-0001")  # 15 kW: at most 3,750 Wh in 15 minutes


@pytest.fixture
def hes(make_api, meter):
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    return api


def reading(start: str, wh, quality="actual", meter="KW-0001"):
    return {"meter": meter, "start": start, "wh": wh, "quality": quality}


def post(hes, body):
    return hes.client.post(URL, data=json.dumps(body), content_type="application/json")


def stored(meter) -> dict[str, tuple]:
    from meters.selectors import meter_series

    start = datetime(2026, 11, 1, tzinfo=UTC)
    series = meter_series(meter_id=meter.pk, start=start, end=start + timedelta(days=2))
    return {
        (start + i * timedelta(minutes=15)).strftime("%d %H:%M"): (
            series.values[i],
            series.quality[i],
        )
        for i in range(len(series))
        if series.quality[i]
    }


def test_it_stores_good_readings_and_reports_each_bad_one(hes, meter):
    future = (
        (timezone.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0).isoformat()
    )
    body = {
        "readings": [
            reading(f"{DAY}T03:00:00+03:00", 410),
            reading(f"{DAY}T03:15:00+03:00", 0),  # a real zero
            reading(f"{DAY}T03:30:00+03:00", None, "missing"),
            reading(f"{DAY}T03:45:00+03:00", 380, "estimated"),
            reading(f"{DAY}T04:00:00+03:00", 1, meter="NO-SUCH"),
            reading(f"{DAY}T04:07:00+03:00", 1),
            reading(future, 1),
            reading(f"{DAY}T04:15:00+03:00", -5),
            reading(f"{DAY}T04:30:00+03:00", 3751),
            reading(f"{DAY}T04:45:00+03:00", 1, "guessed"),
            reading("yesterday", 1),
            reading(f"{DAY}T05:00:00", 1),  # no offset
            reading(f"{DAY}T03:00:00+03:00", 999),  # the same interval again in one batch
            reading(f"{DAY}T05:15:00+03:00", 12.5),
            "not a reading",
        ]
    }

    response = post(hes, body)

    assert response.status_code == 200, response.json()
    result = response.json()
    assert (result["readings"], result["stored"], result["rejected"]) == (15, 4, 11)
    reasons = {r["index"]: r["reason"] for r in result["rejections"]}
    assert reasons == {
        4: "unknown_meter",
        5: "not_on_boundary",
        6: "in_future",
        7: "negative",
        8: "above_capacity",
        9: "bad_quality",
        10: "bad_timestamp",
        11: "bad_timestamp",
        12: "duplicate_in_batch",
        13: "bad_value",
        14: "malformed",
    }
    assert all(r["message"] for r in result["rejections"])
    assert stored(meter) == {
        "01 00:00": (410, 1),
        "01 00:15": (0, 1),
        "01 00:30": (0, 3),
        "01 00:45": (380, 2),
    }
    meter.refresh_from_db()
    assert meter.last_reading_at == datetime(2026, 11, 1, 0, 45, tzinfo=UTC)
    assert meter.last_communication_at is not None


def test_the_same_batch_twice_stores_nothing_twice(hes, meter):
    body = {"readings": [reading(f"{DAY}T0{h}:00:00Z", 100 + h) for h in range(6)]}

    first, second = post(hes, body).json(), post(hes, body).json()

    assert (first["stored"], first["unchanged"]) == (6, 0)
    assert (second["stored"], second["unchanged"], second["corrected"]) == (0, 6, 0)
    assert MeterDay.objects.count() == 1
    assert not ReadingCorrection.objects.exists()
    assert IngestBatch.objects.count() == 2


def test_late_and_out_of_order_data_is_accepted(hes, meter):
    post(hes, {"readings": [reading(f"{DAY}T10:00:00Z", 200)]})
    late = post(
        hes,
        {
            "readings": [
                reading(f"{DAY}T02:00:00Z", 150),
                reading("2026-10-31T23:45:00Z", 90),
                reading(f"{DAY}T01:00:00Z", 120),
            ]
        },
    )
    assert late.json()["stored"] == 3
    assert stored(meter)["01 10:00"] == (200, 1)
    assert stored(meter)["01 02:00"] == (150, 1)
    meter.refresh_from_db()
    assert meter.last_reading_at == datetime(
        2026, 11, 1, 10, 0, tzinfo=UTC
    )  # late data does not move it back


def test_a_correction_replaces_the_value_and_is_audited(hes, meter):
    post(hes, {"readings": [reading(f"{DAY}T08:00:00Z", 300, "estimated")]})

    response = post(hes, {"batch_id": "fix-42", "readings": [reading(f"{DAY}T08:00:00Z", 320)]})

    assert response.json()["corrected"] == 1
    assert stored(meter)["01 08:00"] == (320, 1)
    audit = ReadingCorrection.objects.get()
    assert (audit.old_wh, audit.old_quality, audit.new_wh, audit.new_quality) == (
        300,
        "estimated",
        320,
        "actual",
    )
    assert audit.interval_start == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    assert IngestBatch.objects.get(pk=response.json()["batch_id"]).external_id == "fix-42"


def test_blocks_store_a_load_profile_across_utc_midnight(hes, meter):
    # India-style: a local day starting 18:30 UTC spans two UTC days.
    values = list(range(100, 196))
    response = post(
        hes, {"blocks": [{"meter": "KW-0001", "start": "2026-11-01T18:30:00Z", "values": values}]}
    )

    assert response.json()["stored"] == 96
    data = stored(meter)
    assert (
        data["01 18:30"] == (100, 1)
        and data["01 23:45"] == (121, 1)
        and data["02 00:00"] == (122, 1)
    )
    assert MeterDay.objects.count() == 2


def test_a_bad_value_in_a_block_refuses_only_that_interval(hes, meter):
    values = [200] * 96
    values[10], values[20] = -1, None
    quality = ["actual"] * 96
    quality[20] = "missing"
    response = post(
        hes,
        {
            "blocks": [
                {
                    "meter": "KW-0001",
                    "start": f"{DAY}T00:00:00Z",
                    "values": values,
                    "quality": quality,
                }
            ]
        },
    )

    result = response.json()
    assert (result["stored"], result["rejected"]) == (95, 1)
    assert result["rejections"][0] == {
        "block": 0,
        "position": 10,
        "meter": "KW-0001",
        "start": "2026-11-01T02:30:00+00:00",
        "reason": "negative",
        "message": "Energy cannot be negative.",
    }
    assert stored(meter)["01 05:00"] == (0, 3)


def test_csv_batches(hes, meter):
    text = "meter,start,wh,quality\nKW-0001,2026-11-01T00:00:00Z,100,actual\nKW-0001,2026-11-01T00:15:00Z,,missing\nKW-0001,bad,1,\nKW-0001,2026-11-01T00:30:00Z\n"
    response = hes.client.post(URL, data=text, content_type="text/csv")

    assert response.status_code == 200
    result = response.json()
    assert (result["stored"], result["rejected"]) == (2, 2)
    assert [(r["line"], r["reason"]) for r in result["rejections"]] == [
        (4, "bad_timestamp"),
        (5, "malformed"),
    ]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/json", b'{"readings": [', 400, "parse_error"),
        ("application/json", b"[]", 400, "malformed_batch"),
        ("application/json", b'{"readings": {}}', 400, "malformed_batch"),
        ("application/json", b'{"readings": []}', 400, "empty_batch"),
        (
            "application/json",
            json.dumps({"readings": [reading("2026-11-01T00:00:00Z", -1)]}).encode(),
            400,
            "all_rejected",
        ),
        ("text/csv", b"meter,when\nKW-0001,now\n", 400, "malformed_csv"),
        ("application/xml", b"<readings/>", 415, "unsupported_media_type"),
    ],
)
def test_bad_batches_get_a_clear_4xx_and_store_nothing(
    hes, meter, content_type, body, status, code
):
    response = hes.client.post(URL, data=body, content_type=content_type)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not MeterDay.objects.exists()


def test_an_oversize_batch_is_a_413(hes, meter, settings):
    settings.READINGS_MAX_BODY_BYTES = 1000
    body = {"readings": [reading(f"{DAY}T00:00:00Z", 1)] * 50}
    response = post(hes, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


class TestHeadEndAuthentication:
    def test_anonymous_is_refused(self, make_api, meter):
        response = make_api().post(URL, {"readings": [reading(f"{DAY}T00:00:00Z", 1)]})
        assert response.status_code == 401

    def test_a_consumer_jwt_is_refused(self, make_api, meter):
        response = make_api(UserFactory(is_staff=True)).post(
            URL, {"readings": [reading(f"{DAY}T00:00:00Z", 1)]}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_a_service_token"
        assert not MeterDay.objects.exists()

    def test_a_revoked_token_is_refused(self, hes, meter):
        from meters.models import ServiceToken

        ServiceToken.objects.update(revoked_at=timezone.now())
        response = post(hes, {"readings": [reading(f"{DAY}T00:00:00Z", 1)]})
        assert response.status_code == 401 and response.json()["error"]["code"] == "token_not_valid"

    def test_a_token_writes_only_its_own_utilitys_meters(self, make_api, meter):
        other = UtilityFactory(
            code="sa-sec",
            country="SA",
            timezone="Asia/Riyadh",
            currency="SAR",
            currency_minor_unit=2,
        )
        api = make_api()
        api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(other)}")
        response = post(api, {"readings": [reading(f"{DAY}T00:00:00Z", 1)]})
        assert response.status_code == 400
        assert response.json()["error"]["rejections"][0]["reason"] == "unknown_meter"
        assert not MeterDay.objects.exists()


def test_the_file_command_ingests_with_a_report(meter, tmp_path, capsys):
    from django.core.management import call_command

    path = tmp_path / "readings.csv"
    path.write_text(
        "meter,start,wh,quality\nKW-0001,2026-11-01T00:00:00Z,100,actual\nKW-0001,2026-11-01T00:07:00Z,1,actual\n"
    )
    report = tmp_path / "refused.csv"
    call_command(
        "ingest_readings", meter.utility.code, str(path), "--report", str(report), verbosity=0
    )

    assert "1 stored" in capsys.readouterr().out
    assert "not_on_boundary" in report.read_text()
    assert Meter.objects.get().last_reading_at == datetime(2026, 11, 1, tzinfo=UTC)
