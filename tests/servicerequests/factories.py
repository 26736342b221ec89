from __future__ import annotations

import factory

from accounts.models import Utility
from core.models import ROLE_GROUPS, StaffMembership
from outages.models import StandardsPolicy
from servicerequests.models import RequestType, ServiceRequest
from servicerequests.seed import request_types_seed
from tests.accounts.factories import (
    SAUDI,
    AccountLinkFactory,
    ConsumerAccountFactory,
    UserFactory,
    UtilityFactory,
)


def saudi() -> Utility:
    """The Saudi provider with its request types, the connection standard and guaranteed standards."""
    utility = UtilityFactory(**SAUDI)
    StandardsPolicy.objects.get_or_create(utility=utility)
    request_types_seed(utility=utility, connection_standard=True)
    return utility


def kuwait() -> Utility:
    utility = UtilityFactory()
    request_types_seed(utility=utility)
    return utility


def consumer(utility: Utility, *, language: str = "en"):
    """A user linked to a fresh account of `utility`: (user, account)."""
    link = AccountLinkFactory(
        account=ConsumerAccountFactory(utility=utility), user=UserFactory(language=language)
    )
    return link.user, link.account


def support_staff(utility: Utility, **kwargs):
    """A Support member of `utility`, with the group the migrations give that role."""
    from django.contrib.auth.models import Group, Permission

    user = UserFactory(is_staff=True, phone=None, **kwargs)
    StaffMembership.objects.create(user=user, utility=utility, role="support")
    group, _ = Group.objects.get_or_create(name=ROLE_GROUPS["support"])
    # A transactional test's flush drops what data migrations made: give the permissions again.
    group.permissions.add(*Permission.objects.filter(content_type__app_label="servicerequests"))
    user.groups.add(group)
    return user


class ServiceRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceRequest

    account = factory.SubFactory(ConsumerAccountFactory)
    utility = factory.SelfAttribute("account.utility")
    type = factory.LazyAttribute(
        lambda o: RequestType.objects.get(utility=o.account.utility, code="complaint")
    )
    details = factory.LazyFunction(lambda: {"category": "billing", "subject": "Bill too high"})


def consumer_with_meter(utility: Utility, *, language: str = "en"):
    """A user linked to a fresh account of `utility` holding one meter: (user, account, meter)."""
    from tests.meters.factories import MeterFactory

    meter = MeterFactory(utility=utility)
    link = AccountLinkFactory(account=meter.account, user=UserFactory(language=language))
    return link.user, meter.account, meter


def outage_on(meters, *, start, end, source: str = "meters", **values):
    """An unplanned outage in progress since `start` (restoration estimated at `end`) holding
    `meters`, as the detector or staff leave it: its AffectedMeter rows, no supply periods."""
    from outages.models import AffectedMeter, Outage

    meters = list(meters)
    outage = Outage.objects.create(
        utility=meters[0].utility,
        kind=values.pop("kind", Outage.Kind.UNPLANNED),
        status=values.pop("status", Outage.Status.IN_PROGRESS),
        source=source,
        reason=values.pop("reason", "Feeder trip"),
        planned_start=start,
        planned_end=end,
        actual_start=values.pop("actual_start", start),
        detected_at=start if source == "meters" else None,
        **values,
    )
    AffectedMeter.objects.bulk_create(
        AffectedMeter(outage=outage, meter=meter, account_id=meter.account_id) for meter in meters
    )
    return outage
