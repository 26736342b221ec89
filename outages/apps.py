from __future__ import annotations

from django.apps import AppConfig


class OutagesConfig(AppConfig):
    name = "outages"
    verbose_name = "Outages and guaranteed standards"

    def ready(self) -> None:
        from meters.models import MeterEvent
        from meters.signals import meter_events_stored
        from outages import detection

        meter_events_stored.connect(detection.supply_events_stored, sender=MeterEvent)
