"""The Green Button export read as ESPI readers read it: by following its Atom links.

greenbutton_objects (Code for Boston's ESPI parser) ties a UsagePoint to its MeterReadings, a
MeterReading to its ReadingType and IntervalBlocks, only through `up` and `related` links; a feed
whose entries link only to themselves reads as a usage point with no data, 0 Wh.
"""

from __future__ import annotations

import calendar
import io
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from greenbutton_objects import enums
from greenbutton_objects import parse as greenbutton

from core.timebuckets import local_midnight
from meters import exports, services
from tests.accounts.factories import AccountLinkFactory, UtilityFactory
from tests.meters.factories import EGYPT, INDIA, MeterFactory

ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"
Q = timedelta(minutes=15)
CAIRO = ZoneInfo("Africa/Cairo")
GAP = range(130, 140)  # intervals never sent: left out of the feed, not zeroed

WEEKS = {
    # Egypt's week starts on Saturday. DST 2026 ends Thursday 29 October at 24:00: 23:00-24:00 twice.
    "cairo_autumn": (EGYPT, date(2026, 10, 24)),
    # ...and starts Friday 24 April at 00:00: that day has no hour from 00:00 to 01:00.
    "cairo_spring": (EGYPT, date(2026, 4, 18)),
    "india": (INDIA, date(2026, 3, 2)),  # Asia/Kolkata: +05:30 all year
}


class Week:
    def __init__(self, key: str, make_api) -> None:
        utility_fields, first_day = WEEKS[key]
        self.meter = MeterFactory(utility=UtilityFactory(**utility_fields))
        zone = self.meter.utility.zone
        self.start = local_midnight(first_day, zone)
        end = local_midnight(first_day + timedelta(days=7), zone)
        self.intervals = int((end - self.start) / Q)
        readings = [
            (
                {"index": i},
                self.meter.serial,
                (self.start + i * Q).isoformat(),
                40 + i % 37,
                "estimated" if i % 50 == 0 else "actual",
            )
            for i in range(self.intervals)
            if i not in GAP
        ]
        result = services.readings_ingest(
            utility=self.meter.utility, readings=readings, source="test"
        )
        assert result.rejected == 0
        self.stored = len(readings)
        self.estimated = sum(1 for r in readings if r[4] == "estimated")
        self.period = {"period_from": f"{first_day}", "period_to": f"{first_day + timedelta(7)}"}
        self.api = make_api(AccountLinkFactory(account=self.meter.account).user)

    def export(self) -> bytes:
        response = self.api.get(
            f"/api/v1/meters/{self.meter.pk}/export/", {**self.period, "format": "greenbutton"}
        )
        assert response.status_code == 200
        assert response["Content-Type"] == "application/atom+xml"
        return response.content

    def consumption_total(self) -> int:
        response = self.api.get(
            f"/api/v1/meters/{self.meter.pk}/consumption/", {**self.period, "group_by": "day"}
        )
        assert response.status_code == 200
        return response.json()["total"]["energy_wh"]


@pytest.fixture
def make_week(make_api):
    return lambda key: Week(key, make_api)


def read_by_links(xml: bytes):
    # The parser turns epoch seconds into datetimes through the process's local zone, which Django
    # sets to TIME_ZONE (UTC) here; in a DST zone the repeated hour would fold onto the first.
    return greenbutton.parse_feed(io.BytesIO(xml))


def feed_of(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 - our own export, not untrusted input


def links(entry: ET.Element, rel: str) -> list[str]:
    return [link.get("href") for link in entry.findall(f"{ATOM}link[@rel='{rel}']")]


def local_time_parameters(xml: bytes) -> dict[str, str]:
    (ltp,) = feed_of(xml).iter(f"{ESPI}LocalTimeParameters")
    return {child.tag.removeprefix(ESPI): child.text for child in ltp}


def decode_dst_rule(rule: str, year: int) -> datetime:
    """A DstRuleType as the Green Button Alliance lays out its bits (greenbuttonalliance.org/
    daylight-savings-time): the local wall-clock moment of the change in `year`."""
    bits = int(rule, 16)
    seconds, hour = bits & 0xFFF, bits >> 12 & 0x1F
    weekday, day, operator, month = (
        bits >> 17 & 0x7,
        bits >> 20 & 0x1F,
        bits >> 25 & 0x7,
        bits >> 28,
    )
    if operator == 0:
        on = date(year, month, day)
    else:
        days = range(1, calendar.monthrange(year, month)[1] + 1)
        matching = [d for d in days if date(year, month, d).isoweekday() == weekday]
        if operator == 1:
            on = date(year, month, next(d for d in matching if d >= day))
        else:
            on = date(year, month, matching[-1] if operator == 7 else matching[operator - 2])
    return datetime.combine(on, time(hour)) + timedelta(seconds=seconds)


@pytest.mark.parametrize("key", WEEKS)
def test_a_link_following_reader_reads_what_the_consumption_api_totals(make_week, key):
    week = make_week(key)

    (usage_point,) = read_by_links(week.export())

    readings = [r for mr in usage_point.meterReadings for r in mr.intervalReadings]
    assert sum(r.value for r in readings) == week.consumption_total() > 0
    assert len(readings) == week.stored
    (meter_reading,) = usage_point.meterReadings
    assert meter_reading.readingType.uom == enums.UomType.wattHours
    assert meter_reading.readingType.intervalLength == 900
    assert all(r.timePeriod.duration == Q for r in readings)
    starts = [r.timePeriod.start for r in readings]
    assert starts == sorted(set(starts)) and starts[0] == week.start
    estimated = [r for r in readings if r.readingQualities]
    assert len(estimated) == week.estimated
    assert {q.quality for r in estimated for q in r.readingQualities} == {
        enums.QualityOfReading.estimatedUsingReferenceDay
    }
    # One block per local day; the DST days are 23 and 25 hours long.
    blocks = meter_reading.intervalBlocks
    assert len(blocks) == 7
    assert sum((b.interval.duration for b in blocks), timedelta()) == week.intervals * Q


def test_every_entry_is_reached_from_the_usage_point_by_its_links(make_week):
    xml = make_week("cairo_autumn").export()

    entries = feed_of(xml).findall(f"{ATOM}entry")
    by_self, by_up = {}, defaultdict(list)
    for entry in entries:
        (self_href,), (up_href,) = links(entry, "self"), links(entry, "up")
        # An entry belongs to the collection its `up` names: /.../MeterReading/1 to /.../MeterReading.
        assert self_href.rsplit("/", 1)[0] == up_href
        assert self_href.startswith("/espi/1_1/resource/")
        by_self[self_href] = entry
        by_up[up_href].append(entry)
    todo = [e for e in entries if e.find(f"{ATOM}content/{ESPI}UsagePoint") is not None]
    assert len(todo) == 1
    reached: set[str] = set()
    while todo:
        entry = todo.pop()
        (self_href,) = links(entry, "self")
        if self_href in reached:
            continue
        reached.add(self_href)
        for href in links(entry, "related"):
            targets = [by_self[href]] if href in by_self else by_up[href]
            assert targets, f"related link {href} leads to no entry"
            todo.extend(targets)
    assert reached == set(by_self)
    assert len(by_self) == len(entries) == 4 + 7  # UsagePoint, LTP, MeterReading, ReadingType, days


def test_a_feed_linked_only_by_self_reads_as_nothing(make_week):
    """The export as it was before: the same blocks, each entry linking only to itself."""
    week = make_week("cairo_autumn")
    feed = feed_of(week.export())
    for entry in feed.findall(f"{ATOM}entry"):
        for link in entry.findall(f"{ATOM}link"):
            if link.get("rel") != "self":
                entry.remove(link)

    (usage_point,) = read_by_links(ET.tostring(feed))

    assert sum(r.value for mr in usage_point.meterReadings for r in mr.intervalReadings) == 0
    assert week.consumption_total() > 0


def test_cairo_local_time_gives_egypts_2026_dst_rules(make_week):
    ltp = local_time_parameters(make_week("cairo_spring").export())

    assert ltp["tzOffset"] == "7200" and ltp["dstOffset"] == "3600"
    start = decode_dst_rule(ltp["dstStartRule"], 2026)
    end = decode_dst_rule(ltp["dstEndRule"], 2026)
    assert (start, start.strftime("%A")) == (datetime(2026, 4, 24), "Friday")
    # Thursday 29 October at 24:00, daylight time: the rule's hours stop at 23, so Friday 00:00.
    assert end == datetime(2026, 10, 29) + timedelta(hours=24)
    # Applied as readers apply them (start in standard time, end in daylight time), they give
    # the very instants at which zoneinfo changes Cairo's offset.
    standard, daylight = timedelta(seconds=7200), timedelta(seconds=7200 + 3600)
    for wall, offset, after in [(start, standard, daylight), (end, daylight, standard)]:
        change = (wall - offset).replace(tzinfo=UTC)
        assert (change - timedelta(seconds=1)).astimezone(CAIRO).utcoffset() == offset
        assert change.astimezone(CAIRO).utcoffset() == after


def test_india_local_time_has_no_dst(make_week):
    ltp = local_time_parameters(make_week("india").export())

    assert ltp == {
        "dstEndRule": "FFFFFFFF",  # the schema requires the rules; all ones is "disabled"
        "dstOffset": "0",
        "dstStartRule": "FFFFFFFF",
        "tzOffset": "19800",
    }


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # The Green Button Alliance's own example: US DST from the second Sunday of March 2:00
        # to the first Sunday of November 2:00.
        ("America/New_York", (-18000, 3600, "360E2000", "B40E2000")),
        # 2024: the last Thursday of October was the 31st, so DST ended on Friday 1 November 00:00.
        ("Africa/Cairo", (7200, 3600, "4E0A0000", "B40A0000")),
        ("Asia/Kuwait", (10800, 0, "FFFFFFFF", "FFFFFFFF")),
    ],
)
def test_dst_rules_are_those_of_the_exported_year(zone, expected):
    start = datetime(2024 if zone == "Africa/Cairo" else 2026, 6, 1, tzinfo=UTC)

    ltp = exports.local_time_parameters(zone=ZoneInfo(zone), start=start, end=start + 7 * Q)

    assert (ltp.tz_offset, ltp.dst_offset, ltp.dst_start_rule, ltp.dst_end_rule) == expected
