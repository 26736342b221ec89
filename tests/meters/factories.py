from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory

from meters.models import Meter, MeterAssignment
from meters.services import service_token_create
from tests.accounts.factories import ConsumerAccountFactory, UtilityFactory


class MeterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Meter
        skip_postgeneration_save = True

    utility = factory.SubFactory(UtilityFactory)
    account = factory.SubFactory(ConsumerAccountFactory, utility=factory.SelfAttribute("..utility"))
    serial = factory.Sequence(lambda n: f"KWM{n:07d}")
    rated_capacity_kw = Decimal("15.00")
    # Installed (and the account's tenancy begun) well before any reading a test stores.
    installed_at = datetime(2020, 1, 1, tzinfo=UTC)

    @factory.post_generation
    def assignment(obj, create, extracted, **kwargs):
        if create and obj.account_id:
            MeterAssignment.objects.create(meter=obj, account=obj.account, start=obj.installed_at)


def head_end_token(utility) -> str:
    return service_token_create(utility=utility, name="test head-end")[1]


EGYPT = {
    "code": "eg-nedc",
    "country": "EG",
    "timezone": "Africa/Cairo",
    "currency": "EGP",
    "currency_minor_unit": 2,
    "weekend_days": [4, 5],
    "week_starts_on": 5,
}
INDIA = {
    "code": "in-mpcz",
    "country": "IN",
    "timezone": "Asia/Kolkata",
    "currency": "INR",
    "currency_minor_unit": 2,
    "weekend_days": [6],
    "week_starts_on": 0,
}


def egypt():
    return UtilityFactory(**EGYPT)


def india():
    return UtilityFactory(**INDIA)
