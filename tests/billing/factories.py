from __future__ import annotations

import datetime as dt
from decimal import Decimal

from billing.models import BillingPolicy, Tariff, TariffPeriod, TariffSlab


def flat_tariff(
    utility, *, rate="0.005", fixed="0", mode="prepaid", valid_from=dt.date(2025, 1, 1)
):
    return Tariff.objects.create(
        utility=utility,
        name=f"{mode} flat",
        kind=Tariff.Kind.FLAT,
        payment_mode=mode,
        valid_from=valid_from,
        flat_rate=Decimal(rate),
        fixed_daily_charge=Decimal(fixed),
    )


def progressive_tariff(
    utility, *, slabs=((0, "0.30"), (100, "0.60"), (200, "1.00")), fixed="0", mode="postpaid"
):
    tariff = Tariff.objects.create(
        utility=utility,
        name=f"{mode} slabs",
        kind=Tariff.Kind.PROGRESSIVE,
        payment_mode=mode,
        valid_from=dt.date(2025, 1, 1),
        fixed_daily_charge=Decimal(fixed),
    )
    for start, rate in slabs:
        TariffSlab.objects.create(tariff=tariff, from_kwh=start, rate=Decimal(rate))
    return tariff


def tou_tariff(utility, *, base="0.004", peak="0.010", start=dt.time(12), end=dt.time(17)):
    tariff = Tariff.objects.create(
        utility=utility,
        name="time of use",
        kind=Tariff.Kind.TIME_OF_USE,
        payment_mode="prepaid",
        valid_from=dt.date(2025, 1, 1),
        flat_rate=Decimal(base),
    )
    TariffPeriod.objects.create(
        tariff=tariff, name="peak", start=start, end=end, rate=Decimal(peak)
    )
    return tariff


def policy(utility, **values):
    row, _ = BillingPolicy.objects.update_or_create(utility=utility, defaults=values)
    return row


def role_member(utility, role: str):
    """tests.outages.factories.staff_member with every billing permission the role's data
    migrations give it, which a transactional test's flush removes (staff_member restores only
    outages' own table): what a cashier or support member has in production."""
    import importlib

    from django.contrib.auth.models import Group, Permission

    from core.models import ROLE_GROUPS
    from tests.outages.factories import staff_member

    user = staff_member(utility, role=role)
    group = Group.objects.get(name=ROLE_GROUPS[role])
    codenames: set[str] = set()
    migrations = "billing.migrations"
    moves = importlib.import_module(f"{migrations}.0007_support_moves")
    topups = importlib.import_module(f"{migrations}.0009_topup_reconciliation_simulated_gateway")
    removals = importlib.import_module(f"{migrations}.0011_removal_order_roles")
    matrix = importlib.import_module(f"{migrations}.0012_admin_permission_matrix")
    if group.name == "Support":
        codenames.update(moves.PERMISSIONS)
    if group.name in topups.ROLES:
        codenames.update(topups.PERMISSIONS)
    codenames.update(removals.ROLES.get(group.name, []))
    codenames.update(matrix.ROLES.get(group.name, []))
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="billing", codename__in=codenames)
    )
    return user


def ledger_credit(account, amount: str, key: str) -> None:
    """Money in by a staff adjustment: the balance rises by `amount`."""
    from billing.ledger import ledger_post

    ledger_post(
        account=account, kind="adjustment", amount=Decimal(amount), key=key, description="test"
    )


def ledger_spend(account, amount: str, key: str) -> None:
    """A charge as a charging pass posts it, for the period now (the recent pace reads it)."""
    from django.utils import timezone

    from billing.ledger import ledger_post

    now = timezone.now()
    ledger_post(
        account=account,
        kind="energy_charge",
        amount=-Decimal(amount),
        key=key,
        description="Energy",
        period_start=now,
        period_end=now,
    )
