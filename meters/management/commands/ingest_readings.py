from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Utility
from meters import services
from meters.ingest import csv_rows

CHUNK = 50_000


class Command(BaseCommand):
    help = (
        "Ingest a head-end CSV file (meter,start,wh,quality) into one utility, with a progress bar."
    )

    def add_arguments(self, parser):
        parser.add_argument("utility")
        parser.add_argument("file", type=Path)
        parser.add_argument("--report", type=Path, help="Write the refused rows here as CSV.")

    def handle(self, *args, utility, file, report, **options):
        target = Utility.objects.filter(code=utility).first()
        if target is None:
            raise CommandError(f"No utility with code {utility!r}.")
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            rows = list(csv_rows(text))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        totals = {"stored": 0, "corrected": 0, "unchanged": 0, "rejected": 0}
        rejections = []
        with tqdm(total=len(rows), unit="reading", disable=options["verbosity"] < 1) as bar:
            for offset in range(0, len(rows), CHUNK):
                chunk = rows[offset : offset + CHUNK]
                result = services.readings_ingest(
                    utility=target, readings=chunk, source="file", external_id=file.name
                )
                for key in totals:
                    totals[key] += getattr(result, key)
                rejections.extend(result.rejections)
                bar.update(len(chunk))
        if report and rejections:
            with report.open("w", encoding="utf-8") as out:
                out.write("line,meter,start,reason,message\n")
                for r in rejections:
                    out.write(
                        f'{r.ref.get("line", "")},{r.meter},{r.start},{r.reason},"{r.message}"\n'
                    )
        self.stdout.write(", ".join(f"{v} {k}" for k, v in totals.items()))
        for r in rejections[:20]:
            self.stderr.write(f"line {r.ref.get('line')}: {r.reason}: {r.message}")
        if totals["rejected"] and not any(totals[k] for k in ("stored", "corrected", "unchanged")):
            raise CommandError("Every reading was refused.")
