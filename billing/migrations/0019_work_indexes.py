# The periodic work finds its rows by index (issue 19): the standards engine's quarter-hourly
# pass over recent reconnections reads two partial indexes of reconnect commands instead of
# every relay command ever ordered.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0018_affordability_roles"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="relaycommand",
            index=models.Index(
                condition=models.Q(("action", "reconnect")),
                fields=["completed_at"],
                name="relay_reconnect_completed",
            ),
        ),
        migrations.AddIndex(
            model_name="relaycommand",
            index=models.Index(
                condition=models.Q(("action", "reconnect")),
                fields=["confirmed_at"],
                name="relay_reconnect_confirmed",
            ),
        ),
    ]
