"""Taking cash and converting a meter to prepaid each need a permission of their own, and the roles
get them through their groups (docs/admin-roles.md is the whole table):

- Cashiers take cash at the counter and see the bills they are paid against.
- Approvers carry out conversions to prepaid (as they confirm removals) and see the bills and
  balances behind them.
- Support answer consumers about bills, balances and conversions, and send payment links (the
  call centre's channel).
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "Cashiers": ["take_counter_payment", "view_bill"],
    "Approvers": ["view_conversion", "convert_meter", "view_bill", "view_balance"],
    "Support": [
        "view_conversion",
        "view_bill",
        "view_balance",
        "view_paymentlink",
        "add_paymentlink",
    ],
}


def grant(apps, schema_editor):
    # Permissions are normally made after all migrations; the groups need them now.
    config = apps.get_app_config("billing")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="billing", codename__in=codenames)
        )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(
                *Permission.objects.filter(
                    content_type__app_label="billing", codename__in=codenames
                )
            )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0011_removal_order_roles"),
        ("outages", "0002_staff_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="conversion",
            options={"permissions": [("convert_meter", "Can carry out a conversion to prepaid")]},
        ),
        migrations.AlterModelOptions(
            name="topup",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    (
                        "reconcile_topup",
                        "Can ask the gateway about pending top-ups and settle them",
                    ),
                    ("take_counter_payment", "Can record a cash payment at the counter"),
                ],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
