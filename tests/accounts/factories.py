from __future__ import annotations

from decimal import Decimal

import factory

from accounts.models import AccountLink, ConsumerAccount, User, Utility


class UtilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Utility
        django_get_or_create = ["code"]

    code = "kw-mew"
    name = "Ministry of Electricity, Water and Renewable Energy"
    country = "KW"
    timezone = "Asia/Kuwait"
    currency = "KWD"
    currency_minor_unit = 3
    helpline = "153"
    languages = ["ar", "en"]
    default_language = "ar"
    min_topup = Decimal("1.000")
    weekend_days = [4, 5]
    week_starts_on = 6


class ConsumerAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsumerAccount

    utility = factory.SubFactory(UtilityFactory)
    consumer_id = factory.Sequence(lambda n: f"{10020000 + n}")
    registered_mobile = factory.Sequence(lambda n: f"+9655{n % 10000000:07d}")
    name = factory.Faker("name")
    premises_address = factory.Faker("address")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"+96560{n:06d}")
    phone = factory.SelfAttribute("username")
    language = "en"


class AccountLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccountLink

    user = factory.SubFactory(UserFactory)
    account = factory.SubFactory(ConsumerAccountFactory)
    verified_mobile = factory.SelfAttribute("account.registered_mobile")


# Saudi Arabia as tests use it: the regulator's guaranteed standards apply there.
SAUDI = {
    "code": "sa-sec",
    "name": "Saudi Electricity Company",
    "country": "SA",
    "timezone": "Asia/Riyadh",
    "currency": "SAR",
    "currency_minor_unit": 2,
    "helpline": "933",
    "languages": ["ar", "en"],
    "default_language": "ar",
    "weekend_days": [4, 5],
    "week_starts_on": 6,
    "outage_notice_hours": 48,
    "min_topup": "10.00",
}
