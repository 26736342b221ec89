from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Money: ledger, tariffs, payments and bills"

    def ready(self) -> None:
        from billing import relay, tamper
        from meters.models import MeterEvent
        from meters.signals import meter_events_stored

        meter_events_stored.connect(relay.relay_events_confirm, sender=MeterEvent)
        meter_events_stored.connect(tamper.tamper_events_record, sender=MeterEvent)
