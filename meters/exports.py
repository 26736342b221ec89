"""Download my data: CSV, and Green Button (NAESB ESPI 1.1 Atom) XML."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
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


def _entry(feed: ET.Element, key: str, title: str, href: str, updated: str) -> ET.Element:
    entry = _sub(feed, "entry", ns=ATOM)
    _sub(entry, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}", ns=ATOM)
    ET.SubElement(entry, f"{{{ATOM}}}link", rel="self", href=href)
    _sub(entry, "title", title, ns=ATOM)
    _sub(entry, "published", updated, ns=ATOM)
    _sub(entry, "updated", updated, ns=ATOM)
    return _sub(entry, "content", ns=ATOM)


def green_button(meter: Meter, series: Series, zone: ZoneInfo) -> bytes:
    """An ESPI feed: UsagePoint, LocalTimeParameters, MeterReading, ReadingType (Wh, 15 minutes,
    delta data), and one IntervalBlock per local day. Missing intervals are left out, not zeroed;
    estimated ones carry a ReadingQuality."""
    now = timezone.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # The reader's own account (their newest tenancy of the meter), never whoever holds it now.
    account_id = meter.tenancies[-1].account_id if getattr(meter, "tenancies", None) else 0
    base = f"/espi/1_1/resource/RetailCustomer/{account_id}/UsagePoint/{meter.pk}"
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(
        feed,
        "id",
        f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'feed/{meter.pk}/{series.start}/{series.end}')}",
        ns=ATOM,
    )
    _sub(feed, "title", f"Green Button data for meter {meter.serial}", ns=ATOM)
    _sub(feed, "updated", now, ns=ATOM)

    usage_point = _sub(
        _entry(feed, f"up/{meter.pk}", f"Meter {meter.serial}", base, now), "UsagePoint"
    )
    _sub(_sub(usage_point, "ServiceCategory"), "kind", 0)  # electricity

    standard = zone.utcoffset(datetime(series.start.year, 1, 1))
    summer = zone.utcoffset(datetime(series.start.year, 7, 1))
    ltp = _sub(
        _entry(
            feed,
            f"ltp/{zone}",
            f"Local time: {zone}",
            f"/espi/1_1/resource/LocalTimeParameters/{meter.utility_id}",
            now,
        ),
        "LocalTimeParameters",
    )
    _sub(ltp, "dstEndRule", "00000000")
    _sub(ltp, "dstOffset", int(abs((summer - standard).total_seconds())))
    _sub(ltp, "dstStartRule", "00000000")
    _sub(ltp, "tzOffset", int(min(standard, summer).total_seconds()))

    _sub(
        _entry(feed, f"mr/{meter.pk}", "15-minute energy", f"{base}/MeterReading/1", now),
        "MeterReading",
    )
    reading_type = _sub(
        _entry(
            feed,
            "rt/wh-900",
            "Energy delivered, Wh per 15 minutes",
            "/espi/1_1/resource/ReadingType/1",
            now,
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
        for number, (left, right) in enumerate(itertools.pairwise(edges), start=1):
            lo, hi = max(left, series.start), min(right, series.end)
            if hi <= lo:
                continue
            block = _sub(
                _entry(
                    feed,
                    f"ib/{meter.pk}/{lo.isoformat()}",
                    f"{lo.astimezone(zone):%Y-%m-%d}",
                    f"{base}/MeterReading/1/IntervalBlock/{number}",
                    now,
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
