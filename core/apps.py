from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        # Every process (web, worker, beat) counts its Celery task outcomes (docs/metrics.md),
        # whichever app code it happens to import first.
        from core import lookups, metrics  # noqa: F401 - registered on import
