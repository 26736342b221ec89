"""Download my data: CSV, and Green Button (NAESB ESPI 1.1 Atom) XML."""

from __future__ import annotations

import calendar
import csv
import io
import itertools
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from core.timebuckets import local_date_bounds
from meters.models import Meter
from meters.storage import INTERVAL, INTERVAL_SECONDS, Quality, Series

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
ET.register_namespace("", ATOM)
ET.register_namespace("espi", ESPI)
# ESPI QualityOfReading: 8 is "estimated using reference day"; actual readings carry no quality (valid).
ESPI_ESTIMATED = "8"
# The standard ESPI resource paths (REQ.21 REST API). A download is the customer's own, so its usage
# points sit under RetailCustomer/{id}, as in the Green Button Download My Data samples; a third
# party's copy would sit under Subscription/{id} instead.
ESPI_RESOURCE = "/espi/1_1/resource"
# DstRuleType 0xFFFFFFFF: "rule processing/DST correction is disabled" (ESPI schema).
DST_RULE_DISABLED = "FFFFFFFF"


def csv_lines(series: Series, zone: ZoneInfo) -> Iterator[str]:
    """One line per interval, gaps included and labelled: a blank wh is not a zero."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(["interval_start_local", "interval_start_utc", "wh", "quality"])
    yield flush()
    for index in range(len(series)):
        start = series.start + index * INTERVAL
        quality = Quality(series.quality[index])
        wh = series.values[index] if quality in (Quality.ACTUAL, Quality.ESTIMATED) else ""
        writer.writerow([start.astimezone(zone).isoformat(), start.isoformat(), wh, quality.label])
        if index % 500 == 499:
            yield flush()
    yield flush()


def _sub(parent: ET.Element, tag: str, text: object | None = None, ns: str = ESPI) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        element.text = str(text)
    return element


@dataclass(frozen=True)
class LocalTimeParameters:
    """ESPI LocalTimeParameters (a TimeConfiguration): offsets in seconds, rules as 8 hex digits."""

    tz_offset: int
    dst_offset: int
    dst_start_rule: str
    dst_end_rule: str


def _offset_changes(*, zone: ZoneInfo, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """Each instant of the year at which the zone's UTC offset changes, with the offsets before
    and after: a day-by-day scan, then a bisection to the second inside a day that changes."""
    changes = []
    day = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    for _ in range(366 if calendar.isleap(year) else 365):
        before = datetime.fromtimestamp(day, zone).utcoffset()
        after = datetime.fromtimestamp(day + 86400, zone).utcoffset()
        if before != after:
            lo, hi = day, day + 86400
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, zone).utcoffset() == before:
                    lo = mid
                else:
                    hi = mid
            changes.append((datetime.fromtimestamp(hi, UTC), before, after))
        day += 86400
    return changes


def _dst_rule(wall: datetime) -> str:
    """The ESPI DstRuleType of a change made at this local wall-clock time, the clock as read just
    before the change, as the Green Button samples do (US: 360E2000 = second Sunday of March 2:00,
    B40E2000 = first Sunday of November 2:00, daylight time). Bits, per the DstRuleType annotation
    of the ESPI schema and the Green Button Alliance's "Daylight-Savings Time & Time-Zone Offset"
    (greenbuttonalliance.org/daylight-savings-time): 28-31 month, 25-27 operator, 20-24 day of
    month (0: not applicable), 17-19 day of week (Monday = 1), 12-16 hour, 0-11 second of the hour.
    The day is named as zones name theirs, by weekday: operator 7 is its last occurrence in the
    month, 2 to 6 the first to fifth."""
    days_in_month = calendar.monthrange(wall.year, wall.month)[1]
    operator = 7 if wall.day > days_in_month - 7 else 2 + (wall.day - 1) // 7
    rule = (
        wall.month << 28
        | operator << 25
        | wall.isoweekday() << 17
        | wall.hour << 12
        | wall.minute * 60 + wall.second
    )
    return f"{rule:08X}"


def local_time_parameters(*, zone: ZoneInfo, start: datetime, end: datetime) -> LocalTimeParameters:
    """The zone's offsets and DST rules for an export of [start, end).

    1. Find the zone's offset changes in each local year of the period, from the first.
    2. The first year with one change forward and one back gives the rules: tzOffset is the
       offset before the change forward (standard time), dstOffset the difference, and each rule
       the wall-clock time of its change. ESPI applies a rule pair to every year, and zones change
       theirs (Egypt: none 2015-2022, last Friday of April to last Thursday of October since 2023),
       so the rules are those of the exported year, not of today.
    3. A zone with no such year (India, Kuwait) keeps one offset: dstOffset 0 and both rules
       FFFFFFFF, which the schema defines as "DST correction disabled" (it requires the elements).
    """
    last = end - timedelta(microseconds=1)
    for year in range(start.astimezone(zone).year, last.astimezone(zone).year + 1):
        changes = _offset_changes(zone=zone, year=year)
        forward = [change for change in changes if change[2] > change[1]]
        back = [change for change in changes if change[2] < change[1]]
        if len(forward) == 1 and len(back) == 1:
            (on, standard, summer), (off, summer_before, _) = forward[0], back[0]
            return LocalTimeParameters(
                tz_offset=int(standard.total_seconds()),
                dst_offset=int((summer - standard).total_seconds()),
                dst_start_rule=_dst_rule((on + standard).replace(tzinfo=None)),
                dst_end_rule=_dst_rule((off + summer_before).replace(tzinfo=None)),
            )
    offset = start.astimezone(zone).utcoffset()
    return LocalTimeParameters(
        tz_offset=int(offset.total_seconds()),
        dst_offset=0,
        dst_start_rule=DST_RULE_DISABLED,
        dst_end_rule=DST_RULE_DISABLED,
    )


def _entry(
    feed: ET.Element,
    *,
    title: str,
    updated: str,
    self_href: str,
    up_href: str,
    related: tuple[str, ...] = (),
) -> ET.Element:
    """An Atom entry linked as ESPI readers navigate: `up` to the collection it belongs to,
    `related` to its children's collections and to the resources it refers to."""
    entry = _sub(feed, "entry", ns=ATOM)
    _sub(entry, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self_href)}", ns=ATOM)
    ET.SubElement(entry, f"{{{ATOM}}}link", rel="self", href=self_href)
    ET.SubElement(entry, f"{{{ATOM}}}link", rel="up", href=up_href)
    for href in related:
        ET.SubElement(entry, f"{{{ATOM}}}link", rel="related", href=href)
    _sub(entry, "title", title, ns=ATOM)
    _sub(entry, "published", updated, ns=ATOM)
    _sub(entry, "updated", updated, ns=ATOM)
    return _sub(entry, "content", ns=ATOM)


def green_button(meter: Meter, series: Series, zone: ZoneInfo) -> bytes:
    """An ESPI feed: UsagePoint, LocalTimeParameters, MeterReading, ReadingType (Wh, 15 minutes,
    delta data), and one IntervalBlock per local day. Missing intervals are left out, not zeroed;
    estimated ones carry a ReadingQuality.

    Readers find the data by links, not by position (docs/greenbutton.md): UsagePoint -related->
    its MeterReading collection and LocalTimeParameters; MeterReading -related-> its IntervalBlock
    collection and ReadingType; every entry's `up` is its collection, the parent of its `self`."""
    now = timezone.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # The reader's own account (their newest tenancy of the meter), never whoever holds it now.
    account_id = meter.tenancies[-1].account_id if getattr(meter, "tenancies", None) else 0
    usage_points = f"{ESPI_RESOURCE}/RetailCustomer/{account_id}/UsagePoint"
    usage_point_href = f"{usage_points}/{meter.pk}"
    meter_readings = f"{usage_point_href}/MeterReading"
    meter_reading_href = f"{meter_readings}/1"
    interval_blocks = f"{meter_reading_href}/IntervalBlock"
    reading_type_href = f"{ESPI_RESOURCE}/ReadingType/1"
    local_time_href = f"{ESPI_RESOURCE}/LocalTimeParameters/{meter.utility_id}"

    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(
        feed,
        "id",
        f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'feed/{meter.pk}/{series.start}/{series.end}')}",
        ns=ATOM,
    )
    ET.SubElement(
        feed,
        f"{{{ATOM}}}link",
        rel="self",
        href=f"{ESPI_RESOURCE}/Batch/RetailCustomer/{account_id}/UsagePoint/{meter.pk}",
    )
    _sub(feed, "title", f"Green Button data for meter {meter.serial}", ns=ATOM)
    _sub(feed, "updated", now, ns=ATOM)

    usage_point = _sub(
        _entry(
            feed,
            title=f"Meter {meter.serial}",
            updated=now,
            self_href=usage_point_href,
            up_href=usage_points,
            related=(meter_readings, local_time_href),
        ),
        "UsagePoint",
    )
    _sub(_sub(usage_point, "ServiceCategory"), "kind", 0)  # electricity

    local_time = local_time_parameters(zone=zone, start=series.start, end=series.end)
    ltp = _sub(
        _entry(
            feed,
            title=f"Local time: {zone}",
            updated=now,
            self_href=local_time_href,
            up_href=f"{ESPI_RESOURCE}/LocalTimeParameters",
        ),
        "LocalTimeParameters",
    )
    # The schema's order (TimeConfiguration), not alphabetical by chance.
    _sub(ltp, "dstEndRule", local_time.dst_end_rule)
    _sub(ltp, "dstOffset", local_time.dst_offset)
    _sub(ltp, "dstStartRule", local_time.dst_start_rule)
    _sub(ltp, "tzOffset", local_time.tz_offset)

    _sub(
        _entry(
            feed,
            title="15-minute energy",
            updated=now,
            self_href=meter_reading_href,
            up_href=meter_readings,
            related=(interval_blocks, reading_type_href),
        ),
        "MeterReading",
    )
    reading_type = _sub(
        _entry(
            feed,
            title="Energy delivered, Wh per 15 minutes",
            updated=now,
            self_href=reading_type_href,
            up_href=f"{ESPI_RESOURCE}/ReadingType",
        ),
        "ReadingType",
    )
    for tag, value in [
        ("accumulationBehaviour", 4),
        ("commodity", 1),
        ("dataQualifier", 12),
        ("flowDirection", 1),
        ("intervalLength", INTERVAL_SECONDS),
        ("kind", 12),
        ("phase", 769),
        ("powerOfTenMultiplier", 0),
        ("timeAttribute", 0),
        ("uom", 72),
    ]:
        _sub(reading_type, tag, value)

    if len(series):
        first = series.start.astimezone(zone).date()
        last = (series.end - timedelta(microseconds=1)).astimezone(zone).date()
        edges = local_date_bounds(first, last + timedelta(days=1), zone)
        for left, right in itertools.pairwise(edges):
            lo, hi = max(left, series.start), min(right, series.end)
            if hi <= lo:
                continue
            day = lo.astimezone(zone)
            block = _sub(
                _entry(
                    feed,
                    title=f"{day:%Y-%m-%d}",
                    updated=now,
                    # One block per local day, named by it: the same day keeps its href in every export.
                    self_href=f"{interval_blocks}/{day:%Y%m%d}",
                    up_href=interval_blocks,
                ),
                "IntervalBlock",
            )
            interval = _sub(block, "interval")
            _sub(interval, "duration", int((hi - lo).total_seconds()))
            _sub(interval, "start", int(lo.timestamp()))
            for index in range(series.index_of(lo), series.index_of(hi)):
                quality = series.quality[index]
                if quality not in (Quality.ACTUAL, Quality.ESTIMATED):
                    continue
                reading = _sub(block, "IntervalReading")
                if quality == Quality.ESTIMATED:
                    _sub(_sub(reading, "ReadingQuality"), "quality", ESPI_ESTIMATED)
                period = _sub(reading, "timePeriod")
                _sub(period, "duration", INTERVAL_SECONDS)
                _sub(period, "start", int((series.start + index * INTERVAL).timestamp()))
                _sub(reading, "value", series.values[index])
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
