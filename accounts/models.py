from __future__ import annotations

import uuid
import zoneinfo
from datetime import date

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.workdays import country_holidays


class Language(models.TextChoices):
    ARABIC = "ar", "العربية"
    ENGLISH = "en", "English"
    HINDI = "hi", "हिन्दी"


LANGUAGE_CODES = frozenset(Language.values)


class User(AbstractUser):
    """A person: a consumer signed in by mobile number, or a member of a utility's staff."""

    phone = models.CharField(
        "mobile number (E.164)", max_length=16, unique=True, null=True, blank=True
    )
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)

    def __str__(self) -> str:
        return self.phone or self.username


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone.") from None


def validate_languages(value: object) -> None:
    if not isinstance(value, list) or not value or not set(value) <= LANGUAGE_CODES:
        raise ValidationError(f"Choose one or more of {', '.join(sorted(LANGUAGE_CODES))}.")


def validate_weekdays(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in value):
        raise ValidationError("A list of weekday numbers, 0 = Monday … 6 = Sunday.")


# Fifty years: a longer retention is no retention (and would reach before year 1).
RETENTION_MONTHS_MAX = 600


class Utility(models.Model):
    """A distribution company we serve, with its policy as data: one row per regime, no code branches."""

    code = models.SlugField(
        max_length=32, unique=True, help_text="Short code clients use, e.g. kw-mew."
    )
    name = models.CharField(max_length=200)
    country = models.CharField(
        max_length=2,
        validators=[RegexValidator(r"^[A-Z]{2}$", "ISO 3166 alpha-2, e.g. KW.")],
        help_text="Reads national phone numbers and picks public holidays.",
    )
    timezone = models.CharField(
        max_length=64, validators=[validate_timezone], help_text="IANA zone."
    )
    currency = models.CharField(
        max_length=3, validators=[RegexValidator(r"^[A-Z]{3}$", "ISO 4217.")]
    )
    currency_minor_unit = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(3)],
        help_text="Decimal places: 3 for KWD, 2 for EGP, SAR, INR.",
    )
    helpline = models.CharField(max_length=32, blank=True)
    languages = models.JSONField(default=list, validators=[validate_languages])
    default_language = models.CharField(
        max_length=2, choices=Language.choices, default=Language.ENGLISH
    )
    # Policy values. Money in the currency's major unit, quantized to its minor unit.
    min_topup = models.DecimalField(
        max_digits=12, decimal_places=3, default=0, validators=[MinValueValidator(0)]
    )
    late_fine_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=0, validators=[MinValueValidator(0)]
    )
    unpaid_bills_for_prepaid_conversion = models.PositiveSmallIntegerField(default=2)
    weekend_days = models.JSONField(
        default=list,
        validators=[validate_weekdays],
        help_text="Weekdays of the weekend, 0 = Monday … 6 = Sunday: [4, 5] is Friday and Saturday.",
    )
    week_starts_on = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(6)], help_text="0 = Monday … 6 = Sunday."
    )
    outage_notice_hours = models.PositiveSmallIntegerField(
        default=48, help_text="How long before a planned outage consumers must be told."
    )
    holiday_subdivision = models.CharField(
        max_length=8,
        blank=True,
        help_text="The region whose own public holidays also count (e.g. MP for Madhya Pradesh), "
        "as the holidays package names it; blank: the country's only.",
    )
    is_active = models.BooleanField(default=True)
    reading_retention_months = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(RETENTION_MONTHS_MAX)],
        help_text="How many whole months of readings (and of what was charged for them) to keep "
        "before the current one; older meter-days are deleted. Empty: kept forever. Months are "
        "archived only when every utility's retention has passed them (docs/storage.md, Growth).",
    )

    class Meta:
        verbose_name_plural = "utilities"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(reading_retention_months__isnull=True)
                | Q(reading_retention_months__gte=1, reading_retention_months__lte=600),
                name="reading_retention_in_range",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def holidays_in(self, year: int) -> frozenset[date]:
        """The utility's days off in `year`: its country's (and region's) public holidays from the
        holidays package, plus the days staff added, less those staff struck out
        (UtilityCalendarDay). Every working-day count and disconnection window reads this.
        Kept on the instance: a task or request reads one year's calendar once."""
        cache = self.__dict__.setdefault("_calendar", {})
        if year not in cache:
            days = set(country_holidays(self.country, year, self.holiday_subdivision))
            no_disconnection = set()
            for day, kind in UtilityCalendarDay.objects.filter(
                utility_id=self.pk, day__year=year
            ).values_list("day", "kind"):
                if kind == UtilityCalendarDay.Kind.HOLIDAY:
                    days.add(day)
                elif kind == UtilityCalendarDay.Kind.WORKING_DAY:
                    days.discard(day)
                else:
                    no_disconnection.add(day)
            cache[year] = (frozenset(days), frozenset(no_disconnection))
        return cache[year][0]

    def no_disconnection_days_in(self, year: int) -> frozenset[date]:
        """Days staff declared free of disconnections (an emergency, a heat wave) that are still
        working days for every other count."""
        self.holidays_in(year)
        return self.__dict__["_calendar"][year][1]

    def clean(self) -> None:
        if self.holiday_subdivision:
            import holidays

            try:
                known = holidays.country_holidays(self.country).subdivisions
            except NotImplementedError:
                known = ()
            if self.holiday_subdivision not in known:
                raise ValidationError(
                    {
                        "holiday_subdivision": f"Not a region of {self.country} that the holidays "
                        f"package knows ({', '.join(known) or 'none'})."
                    }
                )
        if self.languages and self.default_language not in self.languages:
            raise ValidationError(
                {"default_language": "The default language must be one of the languages."}
            )


class UtilityCalendarDay(models.Model):
    """A day staff set in a utility's calendar, over what the holidays package says."""

    class Kind(models.TextChoices):
        HOLIDAY = "holiday", "Holiday (no disconnections, not a working day)"
        NO_DISCONNECTION = "no_disconnection", "No disconnections (still a working day)"
        WORKING_DAY = "working_day", "Working day (strikes out a package holiday)"

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="calendar_days")
    day = models.DateField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.HOLIDAY)
    name = models.CharField(max_length=100, help_text="What the day is, as staff will read it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["utility", "day"]
        constraints = [
            models.UniqueConstraint(fields=["utility", "day"], name="one_calendar_entry_a_day")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.name} ({self.get_kind_display()})"


class ConsumerAccount(models.Model):
    """One supply contract as the utility's master data knows it."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="consumer_accounts")
    consumer_id = models.CharField(max_length=32)
    registered_mobile = models.CharField("registered mobile (E.164)", max_length=16)
    registered_mobile_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the registered mobile last changed; empty: it is the account's first. "
        "Its holder sees the account from then on, never what the previous holder lived through.",
    )
    name = models.CharField(max_length=200)
    premises_address = models.TextField(blank=True)
    sanctioned_load_kw = models.DecimalField(
        "sanctioned load (kW)",
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="The contracted demand; a 15-minute demand above it is told to the consumer "
        "(India's consumer-rights rules). Empty: none on record.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["utility", "consumer_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["utility", "consumer_id"], name="consumer_id_unique_per_utility"
            )
        ]
        # Staff find an account by the mobile a caller gives (billing.search): an exact match
        # within the staff member's utilities, never a scan of a million accounts.
        indexes = [
            models.Index(fields=["utility", "registered_mobile"], name="account_mobile_by_utility")
        ]

    def __str__(self) -> str:
        return f"{self.consumer_id} ({self.utility.code})"


class AccountLink(models.Model):
    """A user's proven right to see and act on a consumer account, true for a period.

    It holds while the account's registered mobile is the one its holder proved: a number change
    ends it. Unlinking ends it too. Closing the account ends it as well but leaves the holder a
    read-only view of the account's own history (its final statement, its bills). Ended rows are
    kept for audit. See docs/tenancy.md.
    """

    class EndReason(models.TextChoices):
        UNLINKED = "unlinked", "Unlinked by the user"
        MOBILE_CHANGED = "mobile_changed", "The registered mobile changed"
        ACCOUNT_CLOSED = "account_closed", "The account was closed"
        SHARE_ENDED = "share_ended", "The holder ended the share, or the holder's own link ended"

    class Role(models.TextChoices):
        HOLDER = "holder", "Holder"
        SHARED = "shared", "Shared by the holder"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="account_links")
    account = models.ForeignKey(ConsumerAccount, on_delete=models.CASCADE, related_name="links")
    # A holder's link may do everything; a shared one what the holder granted (accounts.shares).
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.HOLDER)
    can_view = models.BooleanField(
        default=True, help_text="Sees the account: balance, usage, statements, bills, outages."
    )
    can_pay = models.BooleanField(default=True, help_text="May top up the account.")
    receives_alerts = models.BooleanField(
        default=True, help_text="Gets the account's alerts (balance, outages, bills)."
    )
    shared_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="shares_given",
        help_text="For a shared link: the holder's link it hangs off; it ends with it.",
    )
    verified_mobile = models.CharField(
        max_length=16, help_text="The registered mobile the confirming code went to."
    )
    visible_from = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The earliest moment of the account its holder sees: when the proven number "
        "became the registered mobile (empty: from the account's start).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    unlinked_at = models.DateTimeField("ended at", null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "account"],
                condition=Q(unlinked_at__isnull=True),
                name="one_live_link_per_user_and_account",
            )
        ]
        indexes = [
            # An outage's audience: the people alerted for its accounts, read from this index
            # alone (outages.selectors.outage_user_ids; tests/core/test_work_plans.py).
            models.Index(
                fields=["account", "user"],
                condition=Q(unlinked_at__isnull=True, receives_alerts=True),
                name="link_alerted_by_account",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.account}"


class AccountShare(models.Model):
    """An account's holder sharing it with another mobile number, with what that person may do.

    The invitation waits for the person to sign in with that number and accept it; accepting makes
    a shared AccountLink (role "shared") that hangs off the holder's link and ends with it: a new
    registered mobile, a move-out or the account's closing ends every share of the old holder.
    See docs/sharing.md.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the invitee"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined by the invitee"
        REVOKED = "revoked", "Removed by the holder"
        ENDED = "ended", "Ended with the holder's link"
        EXPIRED = "expired", "Not accepted in time"

    OPEN = (Status.PENDING, Status.ACCEPTED)

    account = models.ForeignKey(ConsumerAccount, on_delete=models.CASCADE, related_name="shares")
    holder_link = models.ForeignKey(AccountLink, on_delete=models.CASCADE, related_name="+")
    invited_by = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    phone = models.CharField("invited mobile (E.164)", max_length=16)
    can_view = models.BooleanField(default=True)
    can_pay = models.BooleanField(default=False)
    receives_alerts = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="A pending invitation lapses here.")
    responded_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    link = models.OneToOneField(
        AccountLink,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="share",
        help_text="The shared link made on acceptance.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One open share per number and account: a repeated invite is refused, not doubled.
            models.UniqueConstraint(
                fields=["account", "phone"],
                condition=Q(status__in=["pending", "accepted"]),
                name="one_open_share_per_phone",
            )
        ]
        # The invitee's invitations are found by their number.
        indexes = [models.Index(fields=["phone", "status"], name="share_by_phone")]

    def __str__(self) -> str:
        return f"{self.account} shared with {self.phone} ({self.get_status_display()})"


class OneTimeCode(models.Model):
    """A code sent by SMS. Only its keyed hash is stored; the id is the challenge the client holds."""

    class Purpose(models.TextChoices):
        SIGN_IN = "sign_in", "Sign in"
        LINK = "link", "Link an account"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    phone = models.CharField(max_length=16, help_text="Where the code was sent (E.164).")
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    account = models.ForeignKey(
        ConsumerAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    target = models.CharField(
        max_length=80,
        blank=True,
        help_text="For a link code, the account asked for as utility:consumer id, whether one "
        "exists or not: an unknown id spends the same per-account budget as a real one.",
    )
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    code_hash = models.CharField(max_length=64)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="Replaced by a newer code.")

    class Meta:
        # Each throttle counts recent codes by one of these keys (the account's index also serves
        # revoking its codes when its number changes).
        indexes = [
            models.Index(fields=["phone", "created_at"]),
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["target", "created_at"]),
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["client_ip", "created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} code {self.id}"
