from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Utility
from meters import services
from meters.demo import demo_day_values, demo_meters
from meters.models import Meter


class Command(BaseCommand):
    help = "Create demo meters and fill them with realistic 15-minute readings through the ingest service."

    def add_arguments(self, parser):
        parser.add_argument("--utility", default="kw-mew")
        parser.add_argument(
            "--meters",
            type=int,
            default=100,
            help="How many demo meters to create (0: only existing).",
        )
        parser.add_argument(
            "--days", type=int, default=30, help="How many days back from yesterday."
        )
        parser.add_argument("--prefix", default="SM")
        parser.add_argument(
            "--existing", action="store_true", help="Fill the utility's existing meters too."
        )

    def handle(self, *args, utility, meters, days, prefix, existing, **options):
        target = Utility.objects.filter(code=utility).first()
        if target is None:
            raise CommandError(f"No utility with code {utility!r}.")
        chosen = demo_meters(utility=target, count=meters, prefix=prefix) if meters else []
        if existing:
            chosen = list(Meter.objects.filter(utility=target).exclude(status=Meter.Status.REMOVED))
        today = datetime.now(UTC).date()
        stored = 0
        for back in tqdm(
            range(days, 0, -1), desc=f"{target.code} days", disable=options["verbosity"] < 1
        ):
            day = today - timedelta(days=back)
            start = datetime.combine(day, datetime.min.time(), UTC).isoformat()
            for offset in range(0, len(chosen), 2000):
                blocks = [
                    {
                        "meter": m.serial,
                        "start": start,
                        "values": demo_day_values(serial=m.serial, utility=target, day=day),
                    }
                    for m in chosen[offset : offset + 2000]
                ]
                stored += services.readings_ingest(
                    utility=target, blocks=blocks, source="demo"
                ).stored
        self.stdout.write(self.style.SUCCESS(f"{len(chosen)} meters, {stored} readings stored."))
