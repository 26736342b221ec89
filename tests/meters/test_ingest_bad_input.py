"""A head-end batch with input we cannot store is refused in the ingest's own terms, never a 500:
a reading near year 1 or 9999 or with NUL in its serial is listed among the rejections, a body
too deep or a CSV field past the csv module's limit refuses the whole batch, and nothing of a
refused batch is written."""

from __future__ import annotations

import json
from datetime import date

import pytest
import time_machine

from core.errors import DomainError
from meters.ingest import json_batch_parse
from meters.models import IngestBatch, MeterDay
from tests.meters.factories import MeterFactory, head_end_token

URL = "/api/v1/headend/readings/"
GOOD = "2026-11-01T03:00:00+03:00"


@pytest.fixture
def meter(db):
    return MeterFactory(serial="KW-0001")


@pytest.fixture
def hes(make_api, meter):
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    return api


def post_json(hes, body):
    return hes.client.post(URL, data=json.dumps(body), content_type="application/json")


def post_csv(hes, text: str):
    return hes.client.post(URL, data=text.encode(), content_type="text/csv")


@pytest.mark.parametrize(
    "start",
    [
        "0001-01-01T00:00:00+03:00",  # overflows on the way to UTC
        "0001-01-01T00:00:00-03:00",  # used to be stored, on 1 January of year 1
        "9999-12-31T23:45:00-03:00",
        "1999-12-31T23:45:00+00:00",
    ],
)
def test_a_reading_outside_the_sane_years_is_rejected_and_the_rest_stored(hes, meter, start):
    body = {
        "readings": [
            {"meter": "KW-0001", "start": GOOD, "wh": 100},
            {"meter": "KW-0001", "start": start, "wh": 100},
        ],
        "blocks": [{"meter": "KW-0001", "start": start, "values": [1, 2]}],
    }
    response = post_json(hes, body)

    assert response.status_code == 200, response.content
    result = response.json()
    assert (result["stored"], result["rejected"]) == (1, 3)
    assert {r["reason"] for r in result["rejections"]} == {"out_of_range"}
    assert MeterDay.objects.filter(meter=meter).count() == 1


def test_a_csv_reading_in_year_1_is_rejected(hes, meter):
    response = post_csv(hes, "meter,start,wh\nKW-0001,0001-01-01T00:00:00+03:00,5\n")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "all_rejected"
    assert error["rejections"][0]["reason"] == "out_of_range"
    assert not MeterDay.objects.exists()


def test_a_serial_with_nul_in_csv_is_an_unknown_meter(hes, meter):
    response = post_csv(
        hes, f"meter,start,wh\nKW-0001,{GOOD},5\nKW-\x000001,2026-11-01T03:15:00+03:00,5\n"
    )
    assert response.status_code == 200, response.content
    result = response.json()
    assert (result["stored"], result["rejected"]) == (1, 1)
    assert result["rejections"][0]["reason"] == "unknown_meter"


def test_a_serial_with_nul_in_json_refuses_nothing_it_should_not_store(hes, meter):
    """Per reading (unknown meter) through readings_ingest, or the whole body (NUL) once the view
    reads it with json_batch_parse: a 400 either way, and nothing stored."""
    response = post_json(hes, {"readings": [{"meter": "KW-\x000001", "start": GOOD, "wh": 5}]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("all_rejected", "invalid_character")
    assert not MeterDay.objects.exists()


@pytest.mark.parametrize("wh", ["9" * 5000, "\u00b2", "\u0663"])
def test_a_csv_energy_int_cannot_read_is_a_bad_value(hes, meter, wh):
    """int() refuses over 4,300 digits, and "²" passes str.isdigit(): each was a 500."""
    response = post_csv(
        hes, f"meter,start,wh\nKW-0001,{GOOD},5\nKW-0001,2026-11-01T03:15:00+03:00,{wh}\n"
    )
    assert response.status_code == 200, response.content
    assert [r["reason"] for r in response.json()["rejections"]] == ["bad_value"]


def test_a_batch_id_with_nul_refuses_the_batch(hes, meter):
    response = post_json(
        hes, {"batch_id": "b\x001", "readings": [{"meter": "KW-0001", "start": GOOD, "wh": 5}]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_character"
    assert not IngestBatch.objects.exists() and not MeterDay.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"batch_id": "b\ud800", "readings": [{"meter": "KW-0001", "start": GOOD, "wh": 5}]},
        {"readings": [{"meter": "KW-\udfff", "start": GOOD, "wh": 5}]},
    ],
)
def test_a_lone_surrogate_refuses_the_batch(hes, meter, body):
    """No UTF-8 can hold it: looked up or stored, it was a 500."""
    response = post_json(hes, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_character"
    assert not IngestBatch.objects.exists() and not MeterDay.objects.exists()


def test_a_csv_field_past_the_csv_limit_refuses_the_batch(hes, meter):
    text = f"meter,start,wh\nKW-0001,{GOOD},5\n" + "A" * 140_000 + f",{GOOD},5\n"
    response = post_csv(hes, text)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "csv_field_too_large"
    assert error["line"] == 3
    assert not IngestBatch.objects.exists() and not MeterDay.objects.exists()


def test_the_json_batch_reader_bounds_depth_and_nul():
    for body, code in (
        (b"[" * 2048 + b"]" * 2048, "too_deep"),
        (b'{"readings": [{"meter": "KW\\u0000"}]}', "invalid_character"),
        (b'{"readings": [', "parse_error"),
        (b"[]", "malformed_batch"),
    ):
        with pytest.raises(DomainError) as refused:
            json_batch_parse(body)
        assert refused.value.code == code
    assert json_batch_parse(b'{"batch_id": "b1", "blocks": []}')["external_id"] == "b1"


def test_a_body_nested_2_kb_deep_is_refused(hes, meter):
    hes.client.raise_request_exception = False
    response = hes.client.post(URL, data=b"[" * 2048 + b"]" * 2048, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"


def test_a_reading_older_than_the_utilitys_retention_is_refused(hes, meter):
    """A day the retention deleted must not come back (it would be charged again): readings
    before the first kept day are refused, by reading and by block, and the rest stored. Two
    months kept in November are September and October, from the UTC day before September, where
    a local September east of UTC begins (Kuwait's 1 September 00:00 is 31 August 21:00 UTC)."""
    utility = meter.utility
    utility.reading_retention_months = 2
    utility.save(update_fields=["reading_retention_months"])
    with time_machine.travel("2026-11-20T10:00:00Z", tick=False):
        body = {
            "readings": [
                {"meter": "KW-0001", "start": "2026-09-01T00:00:00+03:00", "wh": 5},
                {"meter": "KW-0001", "start": "2026-08-30T23:45:00+00:00", "wh": 5},
            ],
            "blocks": [
                {"meter": "KW-0001", "start": "2026-08-30T23:45:00+00:00", "values": [1, 2]},
            ],
        }
        result = post_json(hes, body).json()

    assert (result["stored"], result["rejected"]) == (2, 2)
    assert [r["reason"] for r in result["rejections"]] == ["past_retention"] * 2
    assert {r["start"] for r in result["rejections"]} == {"2026-08-30T23:45:00+00:00"}
    assert list(MeterDay.objects.filter(meter=meter).values_list("day", flat=True)) == [
        date(2026, 8, 31)
    ]
