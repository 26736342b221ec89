"""One row of every model the admin shows, for one utility: the admin tests open each admin page
against a row of the staff member's own utility and one of another. Every text of the other
utility's rows carries MARK, so a page that shows any of them is caught by a search for it."""

from __future__ import annotations

import itertools
import uuid
from datetime import time, timedelta
from decimal import Decimal

from django.contrib import admin
from django.core.files.base import ContentFile
from django.db import models
from django.utils import timezone

from accounts.models import User, Utility
from billing.models import TamperCase
from meters.models import Meter, MeterEvent
from outages.models import Outage
from servicerequests.models import Attachment, OpeningHours
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.meters.factories import MeterFactory

MARK = "zzother"
_serial = itertools.count(1)


class Rows:
    """Rows of one utility (a new one, or `utility`), made on demand and kept: `rows.of(Model)`."""

    def __init__(self, *, code: str, mark: str, utility: Utility | None = None) -> None:
        self.mark = mark
        self.utility = utility or UtilityFactory(code=code, name=f"{mark}utility {code}")
        self.user = UserFactory(username=f"{mark}user-{code}", phone=None, first_name=f"{mark}name")
        self.meter = MeterFactory(
            utility=self.utility,
            serial=f"{mark}M{code}"[:40],
            account__utility=self.utility,
            account__consumer_id=f"{mark}C-{code}"[:32],
            account__name=f"{mark}holder",
            account__premises_address=f"{mark}street",
        )
        self._made: dict[type[models.Model], models.Model] = {
            Utility: self.utility,
            User: self.user,
            Meter: self.meter,
            type(self.meter.account): self.meter.account,
        }

    def of(self, model: type[models.Model]) -> models.Model:
        if model not in self._made:
            self._made[model] = self._create(model)
        return self._made[model]

    def every_admin_row(self) -> dict[type[models.Model], models.Model]:
        return {model: self.of(model) for model in admin.site._registry}

    def attachment(self, request) -> Attachment:
        return Attachment.objects.create(
            request=request,
            file=ContentFile(b"%PDF-1.4\n%%EOF\n", name="scan.pdf"),
            original_name=f"{self.mark}scan.pdf",
            content_type="application/pdf",
            size=15,
        )

    def _create(self, model: type[models.Model]) -> models.Model:
        values = {}
        for field in model._meta.concrete_fields:
            if field.primary_key and not field.is_relation:
                continue
            value = self._value(model, field)
            if value is not None:
                values[field.name] = value
        if model is Outage:
            values["planned_end"] = values["planned_start"] + timedelta(hours=2)
        if model is OpeningHours:
            values["closes"] = time(16)
        if model is TamperCase:
            # A case as the queue holds one: its meter's tamper event, listed on its page.
            event = MeterEvent.objects.create(
                utility=self.utility,
                meter=self.meter,
                kind=MeterEvent.Kind.COVER_OPEN,
                occurred_at=values["first_event_at"],
                code=f"{self.mark}code"[:24],
            )
            values.update(kinds=[event.kind], events=1, first_event=event)
            values["last_event_at"] = values["first_event_at"]
        if model._meta.proxy and model._meta.concrete_model in self._made:
            return model.objects.get(pk=self.of(model._meta.concrete_model).pk)
        return model.objects.create(**values)

    def _value(self, model, field):
        if field.is_relation:
            target = field.related_model
            if target is Utility:
                return self.utility
            if field.null or field.has_default():
                return None
            if field.one_to_one:  # its own row, not the shared one
                return self._create(target)
            return self.of(target)
        if field.has_default() or field.null or (field.blank and field.empty_strings_allowed):
            return None
        if field.choices:
            return field.choices[0][0]
        n = next(_serial)
        if isinstance(field, models.EmailField):
            return f"{self.mark}{n}@example.test"
        if isinstance(field, models.CharField | models.TextField):
            return f"{self.mark}{model._meta.model_name}-{n}"[: field.max_length or 200]
        if isinstance(field, models.BooleanField):
            return False
        if isinstance(field, models.DecimalField):
            return Decimal(1)
        if isinstance(field, models.IntegerField | models.FloatField):
            return 1
        if isinstance(field, models.DateTimeField):
            return timezone.now() + timedelta(days=3)
        if isinstance(field, models.DateField):
            return timezone.now().date()
        if isinstance(field, models.TimeField):
            return time(8)
        if isinstance(field, models.UUIDField):
            return uuid.uuid4()
        if isinstance(field, models.JSONField):
            return {}
        raise NotImplementedError(f"{model.__name__}.{field.name}")
