"""What the head-end's meter events set off in the apps above meters, without meters knowing them.

`meter_events_stored` is sent inside the ingest's transaction, once per batch, with the events
stored for the first time (duplicates are not sent again): a receiver writes in that transaction,
so an event is never stored without what it sets off, nor the other way round. A receiver that
only needs to wake a worker does it with transaction.on_commit.

Receivers: billing.relay.relay_events_confirm (relay switched as ordered), billing.tamper
.tamper_events_record (the tamper work queue), outages.detection.supply_events_stored (the outage
detector, woken after commit).
"""

from __future__ import annotations

from django.dispatch import Signal

# send(sender=MeterEvent, utility=Utility, events=list[MeterEvent]): the new events, with ids.
meter_events_stored = Signal()
