"""A day split into named parts: a time-of-use tariff's periods, or parts of the day."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from billing.models import Tariff
from billing.tariffs import Pricing
from insight.selectors.common import DAY_PARTS, REST_OF_DAY, _clock, _local_clock
from meters.storage import PRESENT, Series

# --- Splitting a day into named parts: a time-of-use tariff's periods, or parts of the day ------


@dataclass(frozen=True)
class _Split:
    names: list[str]
    rates: list[Decimal | None]
    windows: list[list[tuple[time, time]]]

    def index_at(self, local: time, cache: dict[time, int]) -> int:
        hit = cache.get(local)
        if hit is None:
            hit = cache[local] = self._index(local)
        return hit

    def _index(self, local: time) -> int:
        # The same order as billing.tariffs.Pricing.rate_at: the first window that holds it.
        for index, windows in enumerate(self.windows):
            for start, end in windows:
                if start < end and start <= local < end:
                    return index
                if start >= end and (local >= start or local < end):
                    return index
        return len(self.names) - 1  # the rest of the day (only a tariff's split has one)


def _tou_split(pricing: Pricing) -> _Split:
    """A time-of-use tariff's periods, and the rest of the day at its flat rate when the periods
    leave some quarter-hour of the day uncovered."""
    periods = list(pricing.tariff.periods.all())
    names = [p.name for p in periods]
    rates: list[Decimal | None] = [p.rate for p in periods]
    windows = [[(p.start, p.end)] for p in periods]
    probe = _Split([*names, REST_OF_DAY], [*rates, None], [*windows, []])
    slots = [time(h, m) for h in range(24) for m in (0, 15, 30, 45)]
    rest = [probe._index(slot) == len(periods) for slot in slots]
    if any(rest):
        runs = []
        for is_rest, group in itertools.groupby(enumerate(rest), key=lambda item: item[1]):
            if is_rest:
                group = list(group)
                first, last = group[0][0], group[-1][0]
                end = slots[last + 1] if last + 1 < len(slots) else time(0)
                runs.append((slots[first], end))
        if len(runs) > 1 and runs[0][0] == time(0) and runs[-1][1] == time(0):  # wraps midnight
            runs = [(runs[-1][0], runs[0][1]), *runs[1:-1]]
        names.append(REST_OF_DAY)
        rates.append(pricing.tariff.flat_rate or Decimal(0))
        windows.append(runs)
    return _Split(names, rates, windows)


def _day_parts_split() -> _Split:
    return _Split(
        [name for name, _, _ in DAY_PARTS],
        [None] * len(DAY_PARTS),
        [[(start, end)] for _, start, end in DAY_PARTS],
    )


def _is_tou(pricing: Pricing) -> bool:
    return pricing.tariff.kind == Tariff.Kind.TIME_OF_USE and bool(pricing.periods)


def _wh_by_part(
    series_list: list[Series], split: _Split, zone: ZoneInfo, start: datetime
) -> tuple[list[int], int]:
    """Wh read in each part of the split, and how many quarter-hours were read."""
    wh = [0] * len(split.names)
    read = 0
    if not series_list:
        return wh, read
    clock = _local_clock(start, len(series_list[0]), zone)
    cache: dict[time, int] = {}
    for series in series_list:
        for i, (value, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality in PRESENT:
                wh[split.index_at(clock[i], cache)] += value
                read += 1
    return wh, read


def _windows_body(windows: list[tuple[time, time]]) -> list[dict]:
    return [{"start": _clock(start), "end": _clock(end)} for start, end in windows]
