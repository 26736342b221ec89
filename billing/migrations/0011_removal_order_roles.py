"""Who works the late path: support staff record removal grounds and read the orders; approvers
confirm or cancel a removal (docs/postpaid.md)."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "Support": ["view_removalorder", "add_removalorder"],
    "Approvers": ["view_removalorder", "change_removalorder"],
}


def forward(apps, schema_editor):
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


def backward(apps, schema_editor):
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
        ("billing", "0010_late_path_removal_orders"),
        ("outages", "0002_staff_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forward, backward)]
