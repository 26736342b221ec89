"""Each consumer's own evidence of an outage: their meter's failure and restoration, a sign
that it had supply, or the outage's own times where it reported nothing (docs/events.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount
from meters.models import MeterAssignment, MeterDay, MeterEvent
from meters.storage import INTERVAL, SLOTS_PER_DAY, Quality, slot_start, utc_days, values_unpack
from outages.models import (
    AffectedMeter,
    Outage,
)

# Issue 17: restoration, repeated outages and a planned outage's real duration are measured per
# consumer from what their meter reported, falling back to the outage's times where it reported
# nothing; a meter that had supply is owed nothing. docs/events.md.

METER = "meter"  # the meter's own failure and restoration (its SupplyPeriod in the outage)
SUPPLIED = "supplied"  # the meter showed supply during the outage: owed nothing
OUTAGE = "outage"  # the meter reported nothing either way: the outage's own times stand for it
EVIDENCE_CHUNK = 500
EVIDENCE_TEXTS = {
    METER: "as your meter reported",
    OUTAGE: "the outage's times: your meter reported nothing",
    SUPPLIED: "your meter had supply during it",
}


@dataclass(frozen=True)
class Evidence:
    """What one meter says of one outage: off from `off_at` to `on_at` (None while it cannot be
    measured yet), or that it had supply (SUPPLIED, no times)."""

    source: str
    off_at: datetime | None = None
    on_at: datetime | None = None

    @property
    def duration(self) -> timedelta | None:
        if self.source == SUPPLIED or self.off_at is None or self.on_at is None:
            return None
        return self.on_at - self.off_at

    def details(self, zone: ZoneInfo) -> dict:
        """For a compensation's details, in the utility's local time (staff and the consumer see
        why): where the times come from, and the times."""

        def local(moment: datetime | None) -> str | None:
            return moment.astimezone(zone).isoformat() if moment else None

        duration = self.duration
        return {
            "evidence": self.source,
            "off_at": local(self.off_at),
            "on_at": local(self.on_at),
            "duration_minutes": None if duration is None else int(duration.total_seconds() // 60),
        }


def outage_evidence(
    *,
    outage: Outage,
    meter_ids: list[int] | None = None,
    now: datetime | None = None,
    look_for_supply: bool = True,
) -> dict[int, Evidence]:
    """{meter id: Evidence} for the outage's affected meters (or those of `meter_ids`).

    1. The meter's own SupplyPeriod in this outage (AffectedMeter.period, linked by the
       detector): off and on as the meter reported them. A period still open ends at the
       outage's restoration, and cannot be measured while the outage runs.
    2. No period, but supply seen within [actual_start, actual_end): an actual reading of more
       than 0 Wh in a quarter-hour wholly inside it, or any event of the meter in it other than a
       power failure (a meter that reports is powered). Owed nothing.
    3. Neither: the meter did not report; the outage's own times stand for it.
    Set-based: one query for the affected rows, then per chunk of meters without a period one
    for their events and one for their packed readings of the outage's UTC days. Without
    `look_for_supply` step 2 is skipped (a caller that only needs to know whether a meter was
    off long, for an outage whose own times are short: supplied or not, it was not).
    """
    start, end = outage.actual_start, outage.actual_end
    if start is None:
        return {}
    rows = AffectedMeter.objects.filter(outage_id=outage.pk)
    if meter_ids is not None:
        rows = rows.filter(meter_id__in=meter_ids)
    evidence: dict[int, Evidence] = {}
    unreported: list[int] = []
    for meter_id, period_id, off_at, on_at in rows.values_list(
        "meter_id", "period_id", "period__off_at", "period__on_at"
    ):
        if period_id is None:
            unreported.append(meter_id)
        else:
            evidence[meter_id] = Evidence(METER, off_at, on_at or end)
    window_end = end or now or timezone.now()
    supplied: set[int] = set()
    looked = len(unreported) if look_for_supply and window_end > start else 0
    for i in range(0, looked, EVIDENCE_CHUNK):
        supplied |= _meters_supplied(unreported[i : i + EVIDENCE_CHUNK], start, window_end)
    for meter_id in unreported:
        evidence[meter_id] = (
            Evidence(SUPPLIED) if meter_id in supplied else Evidence(OUTAGE, start, end)
        )
    return evidence


def _meters_supplied(meter_ids: list[int], start: datetime, end: datetime) -> set[int]:
    """Those of `meter_ids` that show supply within [start, end): an event other than a power
    failure, or an actual reading above 0 Wh in a quarter-hour wholly inside it (a quarter-hour
    that began before the outage holds energy used before it)."""
    supplied = set(
        MeterEvent.objects.filter(
            meter_id__in=meter_ids, occurred_at__gte=start, occurred_at__lt=end
        )
        .exclude(kind=MeterEvent.Kind.POWER_OFF)
        .values_list("meter_id", flat=True)
        .distinct()
    )
    rest = [meter_id for meter_id in meter_ids if meter_id not in supplied]
    if not rest:
        return supplied
    days = utc_days(start, end)
    rows = MeterDay.objects.filter(
        meter_id__in=rest, day__gte=days[0], day__lte=days[-1]
    ).values_list("meter_id", "day", "values", "quality")
    for meter_id, day, raw_values, raw_quality in rows.iterator(chunk_size=1000):
        if meter_id in supplied:
            continue
        midnight = slot_start(day, 0)
        first = max(0, -((midnight - start) // INTERVAL))
        last = min(SLOTS_PER_DAY, (end - midnight) // INTERVAL)
        if first >= last:
            continue
        quality, values = bytes(raw_quality), values_unpack(raw_values)
        if any(quality[s] == Quality.ACTUAL and values[s] > 0 for s in range(first, last)):
            supplied.add(meter_id)
    return supplied


def _account_evidence(meter_ids: list[int], evidence: dict[int, Evidence]) -> Evidence | None:
    """An account's evidence from its meters': the longest off; SUPPLIED when every one of them
    had supply; None when none can be measured yet."""
    found = [evidence[m] for m in meter_ids if m in evidence]
    measured = [e for e in found if e.duration is not None]
    if measured:
        return max(measured, key=lambda e: (e.duration, e.off_at))
    if found and all(e.source == SUPPLIED for e in found):
        return found[0]
    return None


def _outage_holdings(outage: Outage) -> dict[int, list[int]]:
    """{account id: its meter ids} for the accounts that held the affected meters when the outage
    began."""
    began = outage.actual_start or outage.planned_start
    holdings: dict[int, list[int]] = {}
    for account_id, meter_id in (
        MeterAssignment.objects.filter(
            meter_id__in=outage.affected.values("meter_id"), start__lte=began
        )
        .filter(Q(end__isnull=True) | Q(end__gt=began))
        .values_list("account_id", "meter_id")
    ):
        holdings.setdefault(account_id, []).append(meter_id)
    return holdings


def _outage_accounts(outage: Outage) -> list[ConsumerAccount]:
    """The accounts that held the affected meters when the outage began: a tenant who moved in
    after the notice but before the outage lived through it and is owed; one who left is not."""
    return list(ConsumerAccount.objects.filter(pk__in=_outage_holdings(outage)).order_by("pk"))
