from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meters import services
from tests.accounts.factories import AccountLinkFactory
from tests.meters.factories import MeterFactory, egypt

PARSER = Path(__file__).parent / "greenbutton"
Q = timedelta(minutes=15)


@pytest.fixture
def cairo_meter(db):
    """Three Cairo days around the autumn DST change, with a gap and some estimates."""
    meter = MeterFactory(utility=egypt())
    start = datetime(2026, 10, 27, 21, tzinfo=UTC)
    readings = [
        (
            {"index": i},
            meter.serial,
            (start + i * Q).isoformat(),
            40 + i % 37,
            "estimated" if i % 50 == 0 else "actual",
        )
        for i in range(3 * 96 + 4)
        if not 130 <= i < 140
    ]
    assert (
        services.readings_ingest(utility=meter.utility, readings=readings, source="test").rejected
        == 0
    )
    return meter


@pytest.fixture
def api(make_api, cairo_meter):
    return make_api(AccountLinkFactory(account=cairo_meter.account).user)


PERIOD = {"period_from": "2026-10-28", "period_to": "2026-10-31"}


def consumption_total(api, meter) -> int:
    body = api.get(f"/api/v1/meters/{meter.pk}/consumption/", {**PERIOD, "group_by": "day"}).json()
    return body["total"]["energy_wh"]


def test_the_csv_export_lists_every_interval_with_gaps_marked(api, cairo_meter):
    response = api.get(f"/api/v1/meters/{cairo_meter.pk}/export/", {**PERIOD, "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert 'filename="' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 96 + 100 + 96
    assert sum(int(r["wh"]) for r in rows if r["wh"]) == consumption_total(api, cairo_meter)
    gaps = [r for r in rows if r["quality"] == "absent"]
    assert len(gaps) == 10 and all(r["wh"] == "" for r in gaps)
    assert rows[0]["interval_start_local"] == "2026-10-28T00:00:00+03:00"
    assert rows[-1]["interval_start_local"] == "2026-10-30T23:45:00+02:00"


@pytest.mark.skipif(
    (not shutil.which("node") or not (PARSER / "node_modules" / "espi-parser").exists())
    and not os.environ.get("REQUIRE_GREENBUTTON_PARSER"),
    reason="needs node and `npm ci` in tests/meters/greenbutton (make test does it when npm is present)",
)
def test_the_green_button_export_parses_with_an_independent_parser(api, cairo_meter, tmp_path):
    response = api.get(
        f"/api/v1/meters/{cairo_meter.pk}/export/", {**PERIOD, "format": "greenbutton"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/atom+xml"
    feed = tmp_path / "feed.xml"
    feed.write_bytes(response.content)

    parsed = json.loads(
        subprocess.run(
            [shutil.which("node"), str(PARSER / "parse.js"), str(feed)],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    )

    readings = parsed["readings"]
    assert parsed["readingType"]["uom"] == "72" and parsed["readingType"]["intervalLength"] == "900"
    assert len(readings) == 96 + 100 + 96 - 10  # the gap is left out, not zeroed
    assert all(r["duration"] == 900 for r in readings)
    assert sum(r["value"] for r in readings) == consumption_total(api, cairo_meter)
    starts = [r["start"] for r in readings]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert starts[0] == int(datetime(2026, 10, 27, 21, tzinfo=UTC).timestamp())


def test_an_unknown_format_is_refused(api, cairo_meter):
    response = api.get(f"/api/v1/meters/{cairo_meter.pk}/export/", {**PERIOD, "format": "pdf"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_format"
