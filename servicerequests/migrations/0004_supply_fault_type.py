"""The "No supply at my premises" request type (servicerequests.seed.SUPPLY_FAULT_TYPE) for every
utility that exists: the app's outage report opens it where no outage is known. Its spec is
copied here, as it was when written: a migration never reads code that may change later."""

from django.db import migrations

SUPPLY_FAULT = {
    "code": "supply_fault",
    "name_en": "No supply at my premises",
    "name_ar": "انقطاع الكهرباء عن عقاري",
    "name_hi": "मेरे परिसर में बिजली नहीं है",
    "takes_estimate": False,
    "standard": "",
    "target_working_days": None,
    "target_hours": 4,
    "fields": [],
}


def add(apps, schema_editor):
    Utility = apps.get_model("accounts", "Utility")
    RequestType = apps.get_model("servicerequests", "RequestType")
    values = {key: value for key, value in SUPPLY_FAULT.items() if key != "code"}
    for utility in Utility.objects.all():
        # After the types the utility has: the app shows it apart from the request form anyway.
        last = RequestType.objects.filter(utility=utility).order_by("-position").first()
        RequestType.objects.get_or_create(
            utility=utility,
            code=SUPPLY_FAULT["code"],
            defaults={**values, "position": last.position + 1 if last else 0},
        )


def remove(apps, schema_editor):
    # Only where no request was opened with it: a consumer's request is never dropped.
    RequestType = apps.get_model("servicerequests", "RequestType")
    RequestType.objects.filter(code=SUPPLY_FAULT["code"], requests__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_account_mobile_index"),
        ("servicerequests", "0003_outage_reports"),
    ]

    operations = [migrations.RunPython(add, remove)]
