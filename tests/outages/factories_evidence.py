"""Evidence of an outage as a meter gives it, made directly (the detector that links periods to
outages is not needed to test the standards): supply periods, meter events and readings."""

from __future__ import annotations

from datetime import datetime, timedelta

from meters.models import Meter, MeterEvent, SupplyPeriod
from meters.services import readings_ingest
from outages import services
from outages.models import AffectedMeter, Outage
from tests.outages.factories import OutageFactory, outage_publish_delivered

QUARTER = timedelta(minutes=15)


def supply_period(meter: Meter, *, off_at: datetime, on_at: datetime | None) -> SupplyPeriod:
    return SupplyPeriod.objects.create(
        utility=meter.utility,
        meter=meter,
        off_at=off_at,
        on_at=on_at,
        state=SupplyPeriod.State.OUTAGE,
    )


def meter_event(meter: Meter, *, kind: str, at: datetime) -> MeterEvent:
    return MeterEvent.objects.create(utility=meter.utility, meter=meter, kind=kind, occurred_at=at)


def actual_readings(meter: Meter, *, start: datetime, end: datetime, wh: int = 120) -> None:
    """An actual reading of `wh` in every quarter-hour of [start, end), through the ingest."""
    count = int((end - start) / QUARTER)
    readings = [
        ({"index": i}, meter.serial, (start + i * QUARTER).isoformat(), wh, "actual")
        for i in range(count)
    ]
    result = readings_ingest(
        utility=meter.utility, readings=readings, source="test", now=end + timedelta(hours=1)
    )
    assert result.rejected == 0, result.rejections


def outage_lived(
    transformer,
    *,
    start: datetime,
    duration: timedelta,
    periods: dict[Meter, tuple[datetime, datetime | None]] | None = None,
    before_restore=None,
) -> Outage:
    """A planned outage on `transformer`, announced three days ahead, started at `start` and
    restored by staff after `duration`; each meter of `periods` reported its own supply period,
    linked to the outage as the detector links it. `before_restore(outage)` runs just before the
    restoration (readings and events during the outage)."""
    outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=start,
        planned_end=start + duration,
        transformers=[transformer],
    )
    outage_publish_delivered(outage, now=start - timedelta(days=3))
    services.outage_start(outage_id=outage.pk, at=start, now=start)
    period_link(outage, periods or {})
    if before_restore:
        before_restore(outage)
    services.outage_restore(outage_id=outage.pk, at=start + duration, now=start + duration)
    outage.refresh_from_db()
    return outage


def period_link(outage: Outage, periods: dict[Meter, tuple[datetime, datetime | None]]) -> None:
    for meter, (off_at, on_at) in periods.items():
        period = supply_period(meter, off_at=off_at, on_at=on_at)
        linked = AffectedMeter.objects.filter(outage=outage, meter=meter).update(period=period)
        assert linked == 1, f"{meter} is not affected by outage {outage.pk}"
