from __future__ import annotations

from datetime import datetime, timedelta

import factory
import time_machine
from django.test import TestCase
from django.utils import timezone

from accounts.models import Utility
from meters.models import Feeder, GridArea, Transformer
from outages import services
from outages.models import Outage, StandardsPolicy
from tests.accounts.factories import SAUDI, AccountLinkFactory, UserFactory, UtilityFactory
from tests.meters.factories import MeterFactory


def saudi(policy: bool = True) -> Utility:
    utility = UtilityFactory(**SAUDI)
    if policy:
        StandardsPolicy.objects.get_or_create(utility=utility)
    return utility


class GridAreaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GridArea

    utility = factory.SubFactory(UtilityFactory)
    code = factory.Sequence(lambda n: f"A{n:03d}")
    name = factory.Sequence(lambda n: f"Al Olaya block {n}")


class FeederFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feeder

    area = factory.SubFactory(GridAreaFactory)
    code = factory.Sequence(lambda n: f"F{n:03d}")
    name = factory.Sequence(lambda n: f"Feeder {n}")


class TransformerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Transformer

    feeder = factory.SubFactory(FeederFactory)
    code = factory.Sequence(lambda n: f"T{n:04d}")
    name = factory.Sequence(lambda n: f"Transformer T{n:04d}")


def transformer_of(utility: Utility) -> Transformer:
    return TransformerFactory(feeder__area__utility=utility)


def consumer_on(transformer: Transformer, *, users: int = 1, language: str = "en"):
    """A meter on `transformer`, its account, and `users` people linked to that account."""
    utility = transformer.feeder.area.utility
    meter = MeterFactory(utility=utility, transformer=transformer)
    people = [
        AccountLinkFactory(account=meter.account, user=UserFactory(language=language)).user
        for _ in range(users)
    ]
    return meter, people


class OutageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Outage
        skip_postgeneration_save = True

    utility = factory.SubFactory(UtilityFactory)
    kind = Outage.Kind.PLANNED
    reason = "Transformer maintenance"
    planned_start = factory.LazyFunction(lambda: timezone.now() + timedelta(days=4))
    planned_end = factory.LazyAttribute(lambda o: o.planned_start + timedelta(hours=4))

    @factory.post_generation
    def transformers(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.transformers.set(extracted)


def outage_publish_delivered(outage: Outage, *, now: datetime, **kwargs) -> Outage:
    """Publish at `now` (the clock pinned there) and deliver the notice as workers would: the
    pushes, then the SMS to accounts no phone took it for, all at `now`."""
    with time_machine.travel(now, tick=False), TestCase.captureOnCommitCallbacks(execute=True):
        return services.outage_publish(outage_id=outage.pk, now=now, **kwargs)


def outage_run(transformer: Transformer, *, start: datetime, duration: timedelta) -> Outage:
    """A planned outage on `transformer`, announced (and delivered) three days ahead, that ran
    `duration`."""
    outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=start,
        planned_end=start + duration,
        transformers=[transformer],
    )
    outage_publish_delivered(outage, now=start - timedelta(days=3))
    services.outage_start(outage_id=outage.pk, at=start, now=start)
    services.outage_restore(outage_id=outage.pk, at=start + duration, now=start + duration)
    outage.refresh_from_db()
    return outage


def staff_member(utility: Utility, role: str = "planner", **kwargs):
    """A staff user of `utility` with `role`'s group (made by the staff-groups migration)."""

    from core.models import ROLE_GROUPS, StaffMembership

    user = UserFactory(is_staff=True, phone=None, **kwargs)
    user.set_password("correct horse battery staple")
    user.save()
    StaffMembership.objects.create(user=user, utility=utility, role=role)
    user.groups.add(_role_group(ROLE_GROUPS[role]))
    return user


def _role_group(name: str):
    """The role's group. A transactional test's flush removes what data migrations made, so it is
    made again from the migration's own table when missing."""
    import importlib

    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.get_or_create(name=name)
    if created:
        table = importlib.import_module("outages.migrations.0002_staff_groups").GROUPS
        detection = importlib.import_module("outages.migrations.0006_detection_roles").ROLES
        for perm in [*table[name], *detection.get(name, [])]:
            app_label, codename = perm.split(".")
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
    return group
