"""Meter events from the head-end: what each row means, which rows are refused and why, storing
the new ones once, and each meter's supply periods (off from … to …) rebuilt from its events.

A batch is one transaction: its new events, the supply periods they change and what the
`meter_events_stored` receivers write are kept together or not at all.

- codes: the kinds and the IEC 61968-9 EndDeviceEventType codes (docs/events.md, kept equal by a test);
- rows: reading the body and checking each row;
- ingest: events_ingest, storing a batch;
- periods: supply_periods_fold (after commit, one run per utility), supply_periods_rebuild;
- sql: PostgreSQL arrays and instants for the set-based statements.
"""

from __future__ import annotations

from meters.events.codes import CODES, DETAILS_MAX_BYTES, EXTERNAL_ID_MAX, KINDS
from meters.events.ingest import EventsResult, events_ingest
from meters.events.periods import supply_periods_fold, supply_periods_rebuild
from meters.events.rows import MAX_EVENTS, TooManyEvents, events_body_parse

__all__ = [
    "CODES",
    "DETAILS_MAX_BYTES",
    "EXTERNAL_ID_MAX",
    "KINDS",
    "MAX_EVENTS",
    "EventsResult",
    "TooManyEvents",
    "events_body_parse",
    "events_ingest",
    "supply_periods_fold",
    "supply_periods_rebuild",
]
