from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import Utility


class Command(BaseCommand):
    help = "Import consumer master data from CSV into one utility. All rows or none."

    def add_arguments(self, parser):
        parser.add_argument("utility", help="Utility code, e.g. kw-mew")
        parser.add_argument("file", type=Path)

    def handle(self, *args, utility: str, file: Path, **options):
        target = Utility.objects.filter(code=utility).first()
        if target is None:
            raise CommandError(f"No utility with code {utility!r}.")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        rows, errors = services.consumer_accounts_read_csv(data=data)
        report = (
            services.ImportReport(errors=errors)
            if errors
            else services.consumer_accounts_import(utility=target, rows=rows)
        )
        if not report.ok:
            for error in report.errors:
                self.stderr.write(
                    f"line {error.line} {error.consumer_id or '-'} {error.field}: {error.message}"
                )
            raise CommandError(f"Nothing was imported: {len(report.errors)} problems.")
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged."
            )
        )
