"""The event kinds and the IEC 61968-9 EndDeviceEventType codes head-ends send for them.
Each code with its public source: docs/events.md (a test keeps the two equal)."""

from __future__ import annotations

from datetime import timedelta

from meters.models import Meter, MeterEvent

MAX_REJECTIONS_LISTED = 1000
# An event may be at most this far ahead of our clock (head-end and meter clocks drift).
CLOCK_SKEW = timedelta(minutes=2)
DETAILS_MAX_BYTES = 2048
EXTERNAL_ID_MAX = MeterEvent._meta.get_field("external_id").max_length
SERIAL_MAX = Meter._meta.get_field("serial").max_length

POWER_OFF = MeterEvent.Kind.POWER_OFF.value
POWER_ON = MeterEvent.Kind.POWER_ON.value
KINDS = tuple(MeterEvent.Kind.values)

# IEC 61968-9 EndDeviceEventType (type.domain.subdomain.eventOrAction) → kind. Head-ends differ in
# the device type (0 any, 3 electric meter, 26 its communication module) and in the subdomain, so
# a kind takes several codes. Each one, with where it was found: docs/events.md.
CODES: dict[str, str] = {
    "3.26.0.85": POWER_OFF,
    "3.26.0.47": POWER_OFF,
    "3.26.17.185": POWER_OFF,
    "3.26.136.47": POWER_OFF,
    "26.26.0.85": POWER_OFF,
    "0.26.38.47": POWER_OFF,
    "0.26.38.85": POWER_OFF,
    "3.26.0.216": POWER_ON,
    "3.26.17.216": POWER_ON,
    "3.26.136.216": POWER_ON,
    "26.26.0.216": POWER_ON,
    "0.26.38.49": POWER_ON,
    "3.12.29.212": "cover_open",
    "0.12.29.39": "cover_open",
    "0.12.141.212": "cover_open",
    "0.12.66.242": "magnetic_tamper",
    "3.26.137.93": "neutral_tamper",
    "3.31.1.143": "bypass",
    "3.12.48.219": "reverse_current",
    "3.12.93.219": "reverse_current",
    "3.33.1.219": "reverse_current",
    "3.26.93.219": "reverse_current",
    "0.12.48.219": "reverse_current",
    "0.12.6.219": "reverse_current",
    "0.31.0.68": "relay_open",
    "0.31.26.68": "relay_open",
    "0.31.0.42": "relay_closed",
    "0.31.26.42": "relay_closed",
    "3.8.0.177": "overload",
    "0.15.261.139": "overload",
}
