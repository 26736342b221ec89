"""Support staff record move-outs and move-ins (and see them)."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSIONS = ["view_move", "add_move"]


def forward(apps, schema_editor):
    # Permissions are normally made after all migrations; the group needs them now.
    config = apps.get_app_config("billing")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Support")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="billing", codename__in=PERMISSIONS)
    )


def backward(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    group = apps.get_model("auth", "Group").objects.filter(name="Support").first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="billing", codename__in=PERMISSIONS)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_moves"),
        ("outages", "0002_staff_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forward, backward)]
