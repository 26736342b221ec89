"""Demo data for `make run`: the four regimes we serve, a few consumers each, and a staff login."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import ConsumerAccount, User, Utility
from billing import bills, payments, tamper
from billing.ledger import ledger_post
from billing.models import (
    Bill,
    BillingPolicy,
    LedgerEntry,
    Tariff,
    TariffPeriod,
    TariffSlab,
    TopUp,
)
from core.phone import phone_normalize
from insight.models import InsightPolicy
from meters.demo import demo_day_values, demo_grid
from meters.models import GridArea, Meter, MeterAssignment, MeterEvent, SupplyPeriod, Transformer
from meters.services import readings_ingest
from outages import services as outage_services
from outages.models import AffectedMeter, Outage, StandardsPolicy
from servicerequests.seed import request_types_seed

UTILITIES = [
    {
        "code": "kw-mew",
        "name": "Ministry of Electricity, Water and Renewable Energy",
        "country": "KW",
        "timezone": "Asia/Kuwait",
        "currency": "KWD",
        "currency_minor_unit": 3,
        "helpline": "153",
        "languages": ["ar", "en"],
        "default_language": "ar",
        "min_topup": Decimal("1.000"),
        "late_fine_percent": Decimal("0"),
        "outage_notice_hours": 48,
        "weekend_days": [4, 5],
        "week_starts_on": 6,
    },
    {
        "code": "eg-nedc",
        "name": "North Cairo Electricity Distribution Company",
        "country": "EG",
        "timezone": "Africa/Cairo",
        "currency": "EGP",
        "currency_minor_unit": 2,
        "helpline": "121",
        "languages": ["ar", "en"],
        "default_language": "ar",
        "min_topup": Decimal("10.00"),
        "late_fine_percent": Decimal("7.00"),
        "unpaid_bills_for_prepaid_conversion": 2,
        "outage_notice_hours": 48,
        "weekend_days": [4, 5],
        "week_starts_on": 5,
    },
    {
        "code": "sa-sec",
        "name": "Saudi Electricity Company",
        "country": "SA",
        "timezone": "Asia/Riyadh",
        "currency": "SAR",
        "currency_minor_unit": 2,
        "helpline": "920001100",
        "languages": ["ar", "en"],
        "default_language": "ar",
        "min_topup": Decimal("10.00"),
        "late_fine_percent": Decimal("0"),
        "outage_notice_hours": 48,
        "weekend_days": [4, 5],
        "week_starts_on": 6,
    },
    {
        "code": "in-mpcz",
        "name": "MP Madhya Kshetra Vidyut Vitaran Company",
        "country": "IN",
        "holiday_subdivision": "MP",  # Madhya Pradesh's own holidays count too
        "timezone": "Asia/Kolkata",
        "currency": "INR",
        "currency_minor_unit": 2,
        "helpline": "1912",
        "languages": ["hi", "en"],
        "default_language": "hi",
        "min_topup": Decimal("100.00"),
        "late_fine_percent": Decimal("0"),
        "outage_notice_hours": 48,
        "weekend_days": [6],
        "week_starts_on": 0,
    },
]

CONSUMERS = {
    "kw-mew": [
        (
            "10020030",
            "+96550001231",
            "Fahad Al-Mutairi",
            "Salmiya, Block 10, Street 5, Building 12, Apt 3",
        ),
        (
            "10020031",
            "+96550001231",
            "Fahad Al-Mutairi",
            "Salmiya, Block 10, Street 5, Building 12, Apt 4",
        ),
        (
            "10020032",
            "+96550001231",
            "Fahad Al-Mutairi",
            "Salmiya, Block 10, Street 5, Building 12, Apt 5",
        ),
        ("10020040", "+96566002345", "Noura Al-Sabah", "Jabriya, Block 8, Street 2, House 21"),
    ],
    "eg-nedc": [
        ("0123456789", "+201001234567", "Ahmed Hassan", "Shubra, 12 El-Teraa St"),
        ("0123456790", "+201112345678", "Mona Ibrahim", "Heliopolis, 5 Baghdad St"),
    ],
    "sa-sec": [
        (
            "30012345678",
            "+966501234567",
            "Abdullah Al-Qahtani",
            "Riyadh, Al Olaya, 4411 King Fahd Rd",
        ),
    ],
    "in-mpcz": [
        ("N3234567890", "+919812345670", "Ramesh Sharma", "Bhopal, Arera Colony, E-7/45"),
        ("N3234567891", "+919812345671", "Kamla Sharma", "Bhopal, Arera Colony, E-7/46"),
    ],
}


DEMO_DAYS = 45

# Each utility's grid in the words its consumers know (outage notices name the place from them):
# the area's name, then per transformer its locality and streets in the utility's language and
# in English. The consumers above live there.
GRID_PLACES = {
    "kw-mew": (
        "Hawalli",
        [
            ("السالمية، قطعة 10", "Salmiya, block 10", "الشوارع 1–6", "streets 1–6"),
            ("الجابرية، قطعة 8", "Jabriya, block 8", "الشوارع 1–4", "streets 1–4"),
        ],
    ),
    "eg-nedc": (
        "North Cairo",
        [
            ("شبرا", "Shubra", "شارع الترعة", "El-Teraa St"),
            ("مصر الجديدة", "Heliopolis", "شارع بغداد", "Baghdad St"),
        ],
    ),
    "sa-sec": (
        "Riyadh North",
        [
            ("العليا", "Al Olaya", "طريق الملك فهد 4400–4499", "King Fahd Rd 4400–4499"),
            ("العليا", "Al Olaya", "شارع العليا 7000–7099", "Olaya St 7000–7099"),
        ],
    ),
    "in-mpcz": (
        "Bhopal",
        [
            ("अरेरा कॉलोनी", "Arera Colony", "ई-7 सेक्टर", "E-7 sector"),
            ("अरेरा कॉलोनी", "Arera Colony", "ई-8 सेक्टर", "E-8 sector"),
        ],
    ),
}
# Which of the two transformers each consumer's meter hangs on (the first, unless named here).
SECOND_TRANSFORMER = {"10020040", "0123456790"}

# Outages to look at in the admin: (utility, reason, days from today, hours long, where, steps).
# "where" is ("feeder", 0) or ("transformer", n); steps run through the outage services.
DEMO_OUTAGES = [
    ("kw-mew", "Cable joint repair", -7, 3, ("transformer", 0), ("publish", "start", "restore")),
    ("kw-mew", "Feeder maintenance", 5, 4, ("feeder", 0), ("publish",)),
    ("sa-sec", "Transformer replacement", 9, 5, ("transformer", 1), ()),
    ("in-mpcz", "Line upgrade", 4, 6, ("feeder", 0), ("publish",)),
    # Tomorrow: on the dashboard among the planned outages of the next 48 hours.
    ("sa-sec", "Substation maintenance", 1, 3, ("feeder", 0), ("publish",)),
]

# Tariffs as each regime publishes them (rounded): Kuwait's 2 fils a kWh for homes; Egypt's
# progressive residential slabs (postpaid) and a flat prepaid rate; Saudi Arabia's 18 halalas;
# Madhya Pradesh with a time-of-day surcharge in the evening peak.
TARIFFS = {
    "kw-mew": [
        {
            "payment_mode": "prepaid",
            "kind": "flat",
            "flat_rate": "0.002",
            "fixed_daily_charge": "0.000",
        }
    ],
    "eg-nedc": [
        {
            "payment_mode": "prepaid",
            "kind": "flat",
            "flat_rate": "1.35",
            "fixed_daily_charge": "0.00",
        },
        {
            "payment_mode": "postpaid",
            "kind": "progressive",
            "fixed_daily_charge": "0.30",
            "slabs": [
                (0, "0.68"),
                (50, "0.78"),
                (100, "0.95"),
                (200, "1.55"),
                (350, "1.95"),
                (650, "2.10"),
                (1000, "2.23"),
            ],
        },
    ],
    "sa-sec": [
        {
            "payment_mode": "prepaid",
            "kind": "flat",
            "flat_rate": "0.18",
            "fixed_daily_charge": "0.00",
        }
    ],
    "in-mpcz": [
        {
            "payment_mode": "prepaid",
            "kind": "tou",
            "flat_rate": "6.30",
            "fixed_daily_charge": "2.00",
            "periods": [("evening peak", "18:00", "22:00", "6.93")],
        }
    ],
}
EMERGENCY_CREDIT = {"kw-mew": "0.500", "eg-nedc": "20.00", "sa-sec": "10.00", "in-mpcz": "50.00"}
# The rest of each policy, where it is not the default: Kuwait takes any top-up from 1 KWD up (no
# cap); Egypt reminds 3 days before a bill is due and follows its late path (a formal notice
# after more than two months late, removal one month later unless paid).
# India (docs/affordability.md): emergency credit the consumer takes in the app, repaid within 7
# days; reconnection once 50 % of the dues are paid; debt recovered at most 100 INR a day.
POLICY = {
    "kw-mew": {"max_topup": None},
    "eg-nedc": {"bill_due_reminder_days": 3, "removal_months_late": 2, "removal_notice_days": 30},
    "in-mpcz": {
        "emergency_credit_on_request": True,
        "emergency_credit_days": 7,
        "reconnect_min_payment_percent": Decimal(50),
        "debt_recovery_daily_cap": Decimal("100.00"),
    },
}
# India's consumer-rights rules: consumers are told when their demand exceeds the sanctioned load.
INSIGHT_POLICY = {"in-mpcz": {"sanctioned_load_alerts": True}}
OPENING_TOPUP = {
    "kw-mew": "10.000",
    "eg-nedc": "2500.00",
    "sa-sec": "1000.00",
    "in-mpcz": "12000.00",
}


def _bill_months(today: date) -> list[date]:
    """The two whole months before this one: the postpaid household's billed months."""
    last = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return [(last - timedelta(days=1)).replace(day=1), last]


def _demo_bills(account: ConsumerAccount, months: list[date]) -> None:
    """Bills for the postpaid household, issued on the first of the following month as the daily
    run does: the older one paid at a payment outlet, the newer one open."""
    for month in months:
        following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        bills.bill_issue(account=account, month=month, issued_on=following)
    older = Bill.objects.get(account=account, month=months[0])
    reference = f"demo-bill-{account.pk}-{months[0]:%Y-%m}"
    if older.unpaid > 0 and not TopUp.objects.filter(gateway_reference=reference).exists():
        topup = TopUp.objects.create(
            account=account,
            amount=older.unpaid,
            currency=account.utility.currency,
            channel=TopUp.Channel.PAYMENT_CODE,
            gateway="demo",
            gateway_reference=reference,
        )
        paid = datetime.combine(older.due_date - timedelta(days=5), datetime.min.time(), UTC)
        payments.topup_confirm(topup=topup, paid_at=paid + timedelta(hours=9))


class Command(BaseCommand):
    help = "Load demo utilities, consumers with meters and 45 days of readings, and a staff login. Safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        today = datetime.now(UTC).date()
        for values in UTILITIES:
            utility, _ = Utility.objects.update_or_create(code=values["code"], defaults=values)
            transformers = demo_grid(utility=utility, transformers=2)
            self._grid_places(utility, transformers)
            self._billing(utility)
            request_types_seed(utility=utility, connection_standard=utility.code == "sa-sec")
            if utility.code == "sa-sec":  # the Saudi regulator's guaranteed standards
                StandardsPolicy.objects.get_or_create(utility=utility)
            for number, (consumer_id, mobile, name, address) in enumerate(CONSUMERS[utility.code]):
                account, _ = ConsumerAccount.objects.update_or_create(
                    utility=utility,
                    consumer_id=consumer_id,
                    defaults={
                        "registered_mobile": phone_normalize(raw=mobile, region=utility.country),
                        "name": name,
                        "premises_address": address,
                        # Indian connections carry a sanctioned load; the demo's is 3 kW.
                        "sanctioned_load_kw": Decimal("3.00")
                        if utility.code == "in-mpcz"
                        else None,
                    },
                )
                meter, created = Meter.objects.get_or_create(
                    utility=utility,
                    serial=f"{utility.country}M{consumer_id}",
                    defaults={
                        "account": account,
                        "rated_capacity_kw": Decimal("15.00"),
                        "transformer": transformers[int(consumer_id in SECOND_TRANSFORMER)],
                        "installed_at": datetime.combine(
                            today - timedelta(days=400), datetime.min.time(), UTC
                        ),
                    },
                )
                if created:
                    MeterAssignment.objects.create(
                        meter=meter, account=account, start=meter.installed_at
                    )
                    if utility.code == "eg-nedc" and number == 0:  # one postpaid household in Egypt
                        Meter.objects.filter(pk=meter.pk).update(
                            payment_mode=Meter.PaymentMode.POSTPAID
                        )
                if Meter.objects.filter(
                    pk=meter.pk, payment_mode=Meter.PaymentMode.POSTPAID
                ).exists():
                    continue  # a postpaid household pays its bills: no prepaid opening balance
                ledger_post(
                    account=account,
                    kind=LedgerEntry.Kind.TOPUP,
                    amount=Decimal(OPENING_TOPUP[utility.code]),
                    key=f"demo-opening:{account.pk}",
                    description="Opening balance (demo)",
                )
            meters = list(
                Meter.objects.filter(utility=utility, serial__startswith=f"{utility.country}M")
            )
            # Postpaid meters read back to two whole local months, so that they have bills.
            bill_months = _bill_months(today)
            postpaid_days = (today - bill_months[0]).days + 1
            for back in range(max(DEMO_DAYS, postpaid_days), -1, -1):
                day = today - timedelta(days=back)
                start = datetime.combine(day, datetime.min.time(), UTC)
                blocks = []
                for meter in meters:
                    if back > DEMO_DAYS and meter.payment_mode != Meter.PaymentMode.POSTPAID:
                        continue
                    values_ = demo_day_values(serial=meter.serial, utility=utility, day=day)
                    if back == 0:  # today: only the intervals that have ended
                        values_ = values_[: int((datetime.now(UTC) - start).total_seconds() // 900)]
                    if values_:
                        blocks.append(
                            {"meter": meter.serial, "start": start.isoformat(), "values": values_}
                        )
                if blocks:
                    readings_ingest(utility=utility, blocks=blocks, source="demo")
            for meter in meters:
                if meter.payment_mode == Meter.PaymentMode.POSTPAID:
                    _demo_bills(meter.account, bill_months)
            self._outages(utility, transformers)
            self._meter_events(utility, transformers)
        password_file = settings.VAR_DIR / "demo-admin-password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(12))
        password_file.chmod(0o600)  # the admin's password: its owner's to read, nobody else's
        password = password_file.read_text().strip()
        admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True})
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded: {Utility.objects.count()} utilities, "
                f"{ConsumerAccount.objects.count()} consumer accounts, {Meter.objects.count()} meters with "
                f"{DEMO_DAYS} days of readings."
            )
        )
        self.stdout.write(f"Staff login: admin / {password}")

    def _grid_places(self, utility: Utility, transformers: list) -> None:
        area_name, places = GRID_PLACES[utility.code]
        GridArea.objects.filter(pk=transformers[0].feeder.area_id).update(name=area_name)
        for transformer, words in zip(transformers, places, strict=True):
            locality, locality_en, streets, streets_en = words
            Transformer.objects.filter(pk=transformer.pk).update(
                locality=locality, locality_en=locality_en, streets=streets, streets_en=streets_en
            )

    def _outages(self, utility: Utility, transformers: list) -> None:
        """The demo's outages, each planned and stepped through the services as staff would
        (3 days' notice, so no late notice); skipped when the demo already has it."""
        zone = utility.zone
        today = datetime.now(zone).date()
        for code, reason, days, hours, (kind, index), steps in DEMO_OUTAGES:
            if code != utility.code or Outage.objects.filter(utility=utility, reason=reason):
                continue
            start = datetime.combine(today + timedelta(days=days), datetime.min.time(), zone)
            start = (start + timedelta(hours=9)).astimezone(UTC)
            outage = Outage.objects.create(
                utility=utility,
                reason=reason,
                planned_start=start,
                planned_end=start + timedelta(hours=hours),
            )
            if kind == "feeder":
                outage.feeders.set([transformers[index].feeder])
            else:
                outage.transformers.set([transformers[index]])
            published = min(datetime.now(UTC), start - timedelta(days=3))
            for step in steps:
                if step == "publish":
                    outage_services.outage_publish(outage_id=outage.pk, now=published)
                elif step == "start":
                    outage_services.outage_start(outage_id=outage.pk, at=start, now=start)
                else:
                    end = start + timedelta(hours=hours)
                    outage_services.outage_restore(outage_id=outage.pk, at=end, now=end)

    def _meter_events(self, utility: Utility, transformers: list) -> None:
        """What the meters reported, for the admin's event lists, the detected outage and the
        tamper queue: one meter's short failure yesterday (Kuwait), the first transformer's meters
        off for 40 minutes as an outage detected and waiting for confirmation (Saudi Arabia), and
        the postpaid meter's cover opened and a magnet held to it (Egypt). Once per demo."""
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        meters = list(
            Meter.objects.filter(utility=utility, serial__startswith=f"{utility.country}M")
        )
        if not meters or MeterEvent.objects.filter(utility=utility).exists():
            return
        if utility.code == "kw-mew":
            meter, off = meters[0], now - timedelta(days=1, hours=3)
            events = [
                MeterEvent.objects.create(utility=utility, meter=meter, kind=kind, occurred_at=at)
                for kind, at in (
                    (MeterEvent.Kind.POWER_OFF, off),
                    (MeterEvent.Kind.POWER_ON, off + timedelta(minutes=25)),
                )
            ]
            SupplyPeriod.objects.create(
                utility=utility,
                meter=meter,
                off_at=off,
                on_at=off + timedelta(minutes=25),
                off_event=events[0],
                on_event=events[1],
                state=SupplyPeriod.State.SINGLE,
            )
        elif utility.code == "sa-sec":
            off = now - timedelta(minutes=40)
            on_first = [m for m in meters if m.transformer_id == transformers[0].pk]
            outage = Outage.objects.create(
                utility=utility,
                kind=Outage.Kind.UNPLANNED,
                status=Outage.Status.IN_PROGRESS,
                source=Outage.Source.METERS,
                reason="Power failure reported by the meters",
                planned_start=off,
                planned_end=off + timedelta(hours=4),
                actual_start=off,
                detected_at=off + timedelta(minutes=2),
                version=1,
                published_at=off + timedelta(minutes=2),
            )
            outage.transformers.set([transformers[0]])
            for n, meter in enumerate(on_first):
                event = MeterEvent.objects.create(
                    utility=utility,
                    meter=meter,
                    kind=MeterEvent.Kind.POWER_OFF,
                    occurred_at=off + timedelta(seconds=n),
                )
                period = SupplyPeriod.objects.create(
                    utility=utility,
                    meter=meter,
                    off_at=event.occurred_at,
                    off_event=event,
                    state=SupplyPeriod.State.OUTAGE,
                )
                AffectedMeter.objects.create(
                    outage=outage, meter=meter, account=meter.account, period=period
                )
        elif utility.code == "eg-nedc":
            postpaid = [m for m in meters if m.payment_mode == Meter.PaymentMode.POSTPAID]
            meter = (postpaid or meters)[0]
            # As the head-end sends them: IEC 61968-9 codes (meters.events.CODES).
            events = [
                MeterEvent.objects.create(
                    utility=utility, meter=meter, kind=kind, occurred_at=at, code=code
                )
                for kind, at, code in (
                    (MeterEvent.Kind.COVER_OPEN, now - timedelta(hours=5), "3.12.29.212"),
                    (MeterEvent.Kind.MAGNETIC_TAMPER, now - timedelta(hours=4), "0.12.66.242"),
                )
            ]
            tamper.tamper_events_record(MeterEvent, utility=utility, events=events)

    def _billing(self, utility: Utility) -> None:
        BillingPolicy.objects.update_or_create(
            utility=utility,
            defaults={
                "emergency_credit": Decimal(EMERGENCY_CREDIT[utility.code]),
                **POLICY.get(utility.code, {}),
            },
        )
        InsightPolicy.objects.update_or_create(
            utility=utility, defaults=INSIGHT_POLICY.get(utility.code, {})
        )
        for spec in TARIFFS[utility.code]:
            tariff, created = Tariff.objects.get_or_create(
                utility=utility,
                payment_mode=spec["payment_mode"],
                valid_from=date(2025, 1, 1),
                defaults={
                    "name": f"{utility.code} {spec['payment_mode']} residential",
                    "kind": spec["kind"],
                    "flat_rate": Decimal(spec["flat_rate"]) if "flat_rate" in spec else None,
                    "fixed_daily_charge": Decimal(spec["fixed_daily_charge"]),
                },
            )
            if created:
                for start, rate in spec.get("slabs", []):
                    TariffSlab.objects.create(tariff=tariff, from_kwh=start, rate=Decimal(rate))
                for name, start, end, rate in spec.get("periods", []):
                    TariffPeriod.objects.create(
                        tariff=tariff, name=name, start=start, end=end, rate=Decimal(rate)
                    )
