from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from accounts.models import Utility
from core.admin import (
    HistoryInline,
    ReadOnlyMixin,
    ScopedRelatedFieldListFilter,
    UtilityScopedAdmin,
    scope_queryset,
    staff_utility_ids,
    utility_path,
)
from core.charts import line_chart
from core.phone import phone_candidates
from core.timebuckets import moment_text
from meters import selectors, services
from meters.models import (
    Feeder,
    GridArea,
    IngestBatch,
    Meter,
    MeterAssignment,
    MeterEvent,
    ReadingCorrection,
    ServiceToken,
    SupplyPeriod,
    Transformer,
)
from meters.selectors import NOT_REPORTING_AFTER
from meters.storage import PRESENT, floor_to_interval


def _utility_of(obj) -> Utility:
    path = utility_path(type(obj)) or "utility"
    for part in path.split("__"):
        obj = getattr(obj, part)
    return obj


class UtilityQualifiedFilter(ScopedRelatedFieldListFilter):
    """A filter over grid elements (areas, feeders, transformers) whose names repeat from one
    utility to the next: each choice says its utility ("Central district (A1) · Kuwait MEW")
    unless the staff member works for one utility only. Scoped like every related filter."""

    def field_choices(self, field, request, model_admin):
        model = field.related_model
        path = utility_path(model) or "utility"
        rows = scope_queryset(model._default_manager.all(), request.user).select_related(path)
        allowed = staff_utility_ids(request.user)
        if allowed is not None and len(allowed) == 1:
            return [(row.pk, str(row)) for row in rows]
        rows = rows.order_by(f"{path}__name", *model._meta.ordering)
        return [(row.pk, f"{row} · {_utility_of(row).name}") for row in rows]


class GridAdmin(UtilityScopedAdmin):
    """Areas, feeders and transformers: each row says its utility, as names repeat across them."""

    @admin.display(description=_("Utility"))
    def utility_name(self, obj):
        return _utility_of(obj).name


@admin.register(GridArea)
class GridAreaAdmin(GridAdmin):
    list_display = ["code", "name", "utility_name"]
    list_filter = ["utility"]
    list_select_related = ["utility"]
    search_fields = ["code", "name"]


@admin.register(Feeder)
class FeederAdmin(GridAdmin):
    list_display = ["code", "name", "area", "utility_name"]
    list_filter = ["area__utility", ("area", UtilityQualifiedFilter)]
    list_select_related = ["area__utility"]
    search_fields = ["code", "name", "area__name"]


@admin.register(Transformer)
class TransformerAdmin(GridAdmin):
    list_display = ["code", "name", "feeder", "area", "utility_name"]
    list_filter = ["feeder__area__utility", ("feeder__area", UtilityQualifiedFilter)]
    list_select_related = ["feeder__area__utility"]
    search_fields = ["code", "name", "feeder__code", "feeder__name"]

    @admin.display(description=_("Area"), ordering="feeder__area__name")
    def area(self, obj):
        return obj.feeder.area


class AssignmentInline(HistoryInline):
    model = MeterAssignment
    fields = ["account", "start_local", "end_local"]

    @admin.display(description=_("From"))
    def start_local(self, obj):
        return moment_text(obj.start, obj.meter.utility.zone)

    @admin.display(description=_("Until"))
    def end_local(self, obj):
        return moment_text(obj.end, obj.meter.utility.zone) if obj.end else _("now")


def load_chart(meter: Meter, *, now: datetime | None = None) -> SafeString | str:
    """The meter's hourly kWh over the last 7 days, local hours in its utility's zone, with a
    value axis in kWh and the local midnights marked: no script, nothing fetched elsewhere."""
    zone = meter.utility.zone
    end = floor_to_interval(now or timezone.now())
    local_end = end.astimezone(zone)
    # Start on a local hour, so every point is one local hour (Kolkata's hours are UTC's :30).
    start = (local_end - timedelta(days=7)).replace(minute=0).astimezone(UTC)
    series = selectors.meter_series(meter_id=meter.pk, start=start, end=end)
    hours: list[float | None] = []
    ticks: list[tuple[int, str]] = []
    for h in range(len(series) // 4):
        quality = series.quality[h * 4 : h * 4 + 4]
        present = sum(1 for q in quality if q in PRESENT)
        hours.append(sum(series.values[h * 4 : h * 4 + 4]) / 1000 if present else None)
        local = (start + h * timedelta(hours=1)).astimezone(zone)
        if local.hour == 0:
            ticks.append((h, local.strftime("%a %d")))
    if not any(v is not None for v in hours):
        return _("No readings in the last 7 days.")
    return line_chart(
        title=_("Hourly energy, last 7 days"),
        unit=_("kWh per hour"),
        values=hours,
        ticks=ticks,
        description=_("Local hours in %(zone)s; a gap is an hour without readings.")
        % {"zone": meter.utility.timezone},
    )


class ReportingFilter(admin.SimpleListFilter):
    """Meters that should report (not removed), by whether a reading came within
    meters.selectors.NOT_REPORTING_AFTER: the dashboard's "not reporting" figure links here."""

    title = _("reporting")
    parameter_name = "reporting"

    def lookups(self, request, model_admin):
        hours = int(NOT_REPORTING_AFTER.total_seconds() // 3600)
        return [
            ("yes", _("Reading within %(hours)s h") % {"hours": hours}),
            ("no", _("No reading for over %(hours)s h") % {"hours": hours}),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(selectors.meters_reporting_q(now=now))
        if self.value() == "no":
            return queryset.filter(selectors.meters_not_reporting_q(now=now))
        return queryset


@admin.register(Meter)
class MeterAdmin(UtilityScopedAdmin):
    # Few, short columns: the list fits a 1366 px screen beside its filters.
    list_display = [
        "serial",
        "utility_code",
        "account_consumer",
        "payment_mode",
        "status",
        "relay_state",
        "last_reading",
        "last_contact",
    ]
    list_filter = [
        "utility",
        ReportingFilter,
        "payment_mode",
        "status",
        "relay",
        ("transformer__feeder__area", UtilityQualifiedFilter),
    ]
    # One must be here for Django's search box and autocomplete; get_search_results does the work.
    search_fields = ["=serial"]
    search_help_text = _("Meter serial, consumer ID or registered mobile number (any format).")
    list_select_related = ["utility", "account"]
    # Chosen by what staff have in hand (consumer ID, serial, transformer code), never an id.
    autocomplete_fields = ["account", "transformer"]
    readonly_fields = ["last_reading", "last_contact", "load_last_7_days"]
    inlines = [AssignmentInline]

    def get_search_results(self, request, queryset, search_term):
        """Exact keys on indexes, never a contains-match over a million meters: the serial as
        typed or in capitals ((utility, serial) is unique), the account's consumer ID, or its
        registered mobile in any common format of the staff member's utilities' countries."""
        term = " ".join(search_term.split())
        if not term:
            return queryset, False
        spellings = sorted({term, term.upper()})
        found = Q(serial__in=spellings) | Q(account__consumer_id__in=spellings)
        utility_ids = staff_utility_ids(request.user)
        countries = Utility.objects.all()
        if utility_ids is not None:
            countries = countries.filter(pk__in=utility_ids)
        mobiles = phone_candidates(
            term=term, countries=set(countries.values_list("country", flat=True))
        )
        if mobiles:
            found |= Q(account__registered_mobile__in=sorted(mobiles))
        return queryset.filter(found), False

    @admin.display(description=_("Utility"), ordering="utility__code")
    def utility_code(self, obj):
        return obj.utility.code

    @admin.display(description=_("Account"), ordering="account__consumer_id")
    def account_consumer(self, obj):
        return obj.account.consumer_id if obj.account_id else "—"

    @admin.display(description=_("Relay"), ordering="relay")
    def relay_state(self, obj):
        return {
            Meter.Relay.CLOSED: _("On"),
            Meter.Relay.OPEN: _("Off"),
        }.get(obj.relay, _("Unknown"))

    @admin.display(description=_("Last reading"), ordering="last_reading_at")
    def last_reading(self, obj):
        return moment_text(obj.last_reading_at, obj.utility.zone)

    @admin.display(description=_("Last contact"), ordering="last_communication_at")
    def last_contact(self, obj):
        return moment_text(obj.last_communication_at, obj.utility.zone)

    @admin.display(description=_("Installed"))
    def installed(self, obj):
        return moment_text(obj.installed_at, obj.utility.zone)

    @admin.display(description=_("Load, last 7 days"))
    def load_last_7_days(self, obj):
        return load_chart(obj) if obj.pk else "-"

    # Written by ingest, shown read-only (in the utility's zone) once the meter exists.
    exclude = ["last_reading_at", "last_communication_at"]

    def get_exclude(self, request, obj=None):
        # Once installed, the date opened the meter's first tenancy: shown, not edited here.
        excluded = list(super().get_exclude(request, obj) or [])
        return [*excluded, "installed_at"] if obj is not None else excluded

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # A tenant changes by Move out and Move in (Billing → Moves), which settle the money and
        # tell the people concerned; the account here only sets a new meter's first tenancy.
        return ["account", "installed", *self.readonly_fields]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change and obj.account_id is not None:
            MeterAssignment.objects.create(meter=obj, account=obj.account, start=obj.installed_at)


@admin.register(ServiceToken)
class ServiceTokenAdmin(UtilityScopedAdmin):
    list_display = ["name", "utility", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["utility"]
    fields = ["utility", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token, raw = services.service_token_create(utility=obj.utility, name=obj.name)
        obj.pk = token.pk
        self.audit(request, token, "add")
        self.message_user(
            request, f"Copy this token now; it is not shown again: {raw}", messages.WARNING
        )

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} tokens revoked.")


@admin.register(IngestBatch)
class IngestBatchAdmin(UtilityScopedAdmin):
    list_display = [
        "id",
        "utility",
        "source",
        "external_id",
        "received_at",
        "readings",
        "stored",
        "corrected",
        "unchanged",
        "rejected",
    ]
    list_filter = ["utility", "source"]
    search_fields = ["external_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ReadingCorrection)
class ReadingCorrectionAdmin(UtilityScopedAdmin):
    list_display = [
        "meter",
        "interval_start",
        "old_wh",
        "old_quality",
        "new_wh",
        "new_quality",
        "corrected_at",
    ]
    search_fields = ["meter__serial"]
    raw_id_fields = ["meter", "batch"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MeterSerialSearch:
    """Search by the meter's serial, exactly (as typed or in capitals): an index, never a
    contains-match over every event stored."""

    search_fields = ["=meter__serial"]
    search_help_text = _("Meter serial, exactly.")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(meter__serial__in=sorted({term, term.upper()})), False


@admin.register(MeterEvent)
class MeterEventAdmin(MeterSerialSearch, ReadOnlyMixin, UtilityScopedAdmin):
    """What the meters reported through the head-end, as it came: read-only."""

    list_display = ["meter", "kind", "code", "occurred_at", "received_at"]
    list_filter = ["kind"]
    list_select_related = ["meter"]
    fields = [
        "meter",
        "kind",
        "code",
        "occurred_at",
        "received_at",
        "external_id",
        "details",
        "batch",
    ]
    readonly_fields = fields
    show_full_result_count = False  # a count of every event ever stored is not worth its scan


@admin.register(SupplyPeriod)
class SupplyPeriodAdmin(MeterSerialSearch, ReadOnlyMixin, UtilityScopedAdmin):
    """Each meter's time without supply, from its own failure and restoration events."""

    list_display = ["meter", "off_at", "on_at", "state", "duration"]
    list_filter = ["state"]
    list_select_related = ["meter"]
    fields = ["meter", "off_at", "on_at", "duration", "state", "off_event", "on_event"]
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description=_("Without supply"))
    def duration(self, obj):
        if obj.on_at is None:
            return _("still off")
        minutes = int((obj.on_at - obj.off_at).total_seconds() // 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
