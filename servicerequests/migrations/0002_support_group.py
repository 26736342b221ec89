"""The Support role works the service-request queues: its group gets these permissions. Which
utility's requests a member sees comes from core.StaffMembership."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = "Support"
PERMISSIONS = [
    "view_servicerequest",
    "change_servicerequest",
    "process_servicerequest",
    "view_requestevent",
    "view_attachment",
    "view_requesttype",
    "view_connectionpolicy",
    "view_openinghours",
]


def forward(apps, schema_editor):
    config = apps.get_app_config("servicerequests")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=SUPPORT)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="servicerequests", codename__in=PERMISSIONS
        )
    )


def backward(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=SUPPORT).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="servicerequests")
        )


class Migration(migrations.Migration):
    dependencies = [
        ("servicerequests", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forward, backward)]
