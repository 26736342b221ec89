"""The guaranteed standards in the admin: the policy and reminder schedule (editable data), the
compensations owed, force-majeure exemptions, and marking a disconnection wrongful."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from billing.models import RelayCommand
from core.admin import (
    MoneyForm,
    ReadOnlyMixin,
    UtilityScopedAdmin,
    money_column,
    scope_queryset,
)
from core.errors import DomainError
from core.money import utility_money
from core.timebuckets import moment_text
from outages import selectors, standards
from outages.admin.forms import ExemptionFileForm
from outages.models import (
    Compensation,
    DetectionPolicy,
    Disconnection,
    ExemptionRequest,
    ReminderSchedule,
    StandardsPolicy,
)


def local_column(field: str, *, description: str, utility: str = "utility"):
    """A column or read-only field showing the datetime `field` in its utility's zone, with the
    zone: "2026-12-01 04:41 +03". `utility` is the path from the row to its Utility."""

    @admin.display(description=description, ordering=field)
    def show(model_admin, obj) -> str:
        owner = obj
        for part in utility.split("__"):
            owner = getattr(owner, part, None)
        value = getattr(obj, field)
        return moment_text(value, owner.zone) if owner is not None else "-"

    show.__name__ = f"{field}_local"
    return show


class StandardsPolicyForm(MoneyForm):
    money_fields = (
        "notice_amount",
        "restoration_amount",
        "restoration_amount_per_hour",
        "reconnection_amount",
        "reconnection_amount_per_hour",
        "repeated_amount",
        "repeated_amount_per_outage",
        "wrongful_disconnection_amount",
    )


@admin.register(DetectionPolicy)
class DetectionPolicyAdmin(UtilityScopedAdmin):
    """How the utility's meters' failures become outages (outages.detection; docs/events.md)."""

    list_display = [
        "utility",
        "enabled",
        "window_seconds",
        "min_meters",
        "min_share",
        "estimate_minutes",
    ]
    list_select_related = ["utility"]
    fieldsets = (
        (None, {"fields": ("utility", "enabled")}),
        (
            gettext_lazy("When failures are an outage of the grid"),
            {
                "fields": ("window_seconds", "min_meters", "min_share"),
                "description": gettext_lazy(
                    "Fewer failures under a transformer are faults at those consumers; a feeder "
                    "or area is out when this share of its transformers or feeders is."
                ),
            },
        ),
        (gettext_lazy("What consumers are told"), {"fields": ("estimate_minutes",)}),
    )


@admin.register(StandardsPolicy)
class StandardsPolicyAdmin(UtilityScopedAdmin):
    form = StandardsPolicyForm
    list_display = [
        "utility",
        "notice",
        "restoration_hours",
        "restoration",
        "restoration_per_hour",
        "reconnection_hours",
        "repeated_allowed",
        "wrongful_disconnection",
        "exemption_working_days",
        "payment_days",
    ]
    list_select_related = ["utility"]
    notice = money_column("notice_amount", description=gettext_lazy("Notice amount"))
    restoration = money_column("restoration_amount", description=gettext_lazy("Restoration amount"))
    restoration_per_hour = money_column(
        "restoration_amount_per_hour", description=gettext_lazy("Restoration amount per hour")
    )
    wrongful_disconnection = money_column(
        "wrongful_disconnection_amount", description=gettext_lazy("Wrongful disconnection amount")
    )
    fieldsets = (
        (None, {"fields": ("utility",)}),
        (
            gettext_lazy("Notice of a planned outage"),
            {
                "fields": ("notice_amount",),
                "description": gettext_lazy(
                    "The notice period itself is the utility's outage notice hours."
                ),
            },
        ),
        (
            gettext_lazy("Restoration"),
            {"fields": ("restoration_hours", "restoration_amount", "restoration_amount_per_hour")},
        ),
        (
            gettext_lazy("Reconnection after payment"),
            {
                "fields": (
                    "reconnection_hours",
                    "reconnection_amount",
                    "reconnection_amount_per_hour",
                )
            },
        ),
        (
            gettext_lazy("Repeated outages"),
            {
                "fields": (
                    "repeated_min_hours",
                    "repeated_allowed",
                    "repeated_amount",
                    "repeated_amount_per_outage",
                )
            },
        ),
        (gettext_lazy("Wrongful disconnection"), {"fields": ("wrongful_disconnection_amount",)}),
        (
            gettext_lazy("Exemptions and payment"),
            {"fields": ("exemption_working_days", "payment_days")},
        ),
    )


@admin.register(ReminderSchedule)
class ReminderScheduleAdmin(UtilityScopedAdmin):
    list_display = ["utility", "enabled", "days_before", "local_time", "upcoming"]
    list_select_related = ["utility"]

    @admin.display(description=gettext_lazy("Next reminders (local)"))
    def upcoming(self, obj):
        zone = obj.utility.zone
        return (
            "; ".join(
                f"#{outage.pk} {moment_text(at, zone)}"
                for outage, at in selectors.reminders_upcoming(schedule=obj, limit=3)
            )
            or "-"
        )


_COMPENSATION_TIMES = ("failure_at", "exemption_deadline", "pay_by", "created_at")


@admin.register(Compensation)
class CompensationAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    list_display = [
        "id",
        "account",
        "standard",
        "amount_text",
        "status",
        "failure_at_local",
        "exemption_deadline_local",
        "pay_by_local",
        "outage",
    ]
    list_filter = ["status", "standard", "utility"]
    search_fields = ["account__consumer_id", "account__name", "event_key", "reason"]
    list_select_related = ["utility", "account__utility", "outage"]
    date_hierarchy = "failure_at"
    # The stored amount has 3 decimals whatever the currency, and times are UTC: both are shown
    # through columns in the utility's decimals and zone instead.
    fields = [
        "amount_text"
        if f.name == "amount"
        else f"{f.name}_local"
        if f.name in _COMPENSATION_TIMES
        else f.name
        for f in Compensation._meta.fields
        if f.name not in ("id", "currency")
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description=gettext_lazy("Amount"))
    failure_at_local = local_column("failure_at", description=gettext_lazy("Failure (local)"))
    exemption_deadline_local = local_column(
        "exemption_deadline", description=gettext_lazy("Exemption deadline (local)")
    )
    pay_by_local = local_column("pay_by", description=gettext_lazy("Pay by (local)"))
    created_at_local = local_column("created_at", description=gettext_lazy("Created (local)"))
    actions = ["file_exemption"]

    def has_file_exemption_permission(self, request) -> bool:
        return request.user.has_perm("outages.add_exemptionrequest")

    @admin.action(
        description=gettext_lazy("File a force-majeure exemption for this event"),
        permissions=["file_exemption"],
    )
    def file_exemption(self, request, queryset):
        events = sorted(set(queryset.values_list("standard", "event_key")))
        if len(events) != 1:
            messages.error(request, _("Choose compensations of one event and standard."))
            return None
        standard, event_key = events[0]
        url = reverse("admin:outages_exemptionrequest_add")
        return redirect(f"{url}?event={standard}|{event_key}")


@admin.register(ExemptionRequest)
class ExemptionRequestAdmin(UtilityScopedAdmin):
    list_display = [
        "id",
        "standard",
        "event_key",
        "status",
        "filed_by",
        "filed_at_local",
        "deadline_local",
        "decided_by",
        "covered",
    ]
    list_filter = ["status", "standard", "utility"]
    list_select_related = ["utility", "filed_by", "decided_by"]
    search_fields = ["event_key", "justification"]
    readonly_fields = [
        f"{f.name}_local" if f.name in ("filed_at", "deadline", "decided_at") else f.name
        for f in ExemptionRequest._meta.fields
    ] + ["covered"]
    filed_at_local = local_column("filed_at", description=gettext_lazy("Filed (local)"))
    deadline_local = local_column("deadline", description=gettext_lazy("Deadline (local)"))
    decided_at_local = local_column("decided_at", description=gettext_lazy("Decided (local)"))
    actions = ["approve", "reject"]

    @admin.display(description=gettext_lazy("Compensations"))
    def covered(self, obj):
        return ", ".join(
            f"{status}: {n}" for status, n in selectors.exemption_covered(exemption=obj)
        )

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _events(self, request):
        compensations = scope_queryset(Compensation.objects.all(), request.user)
        labels = dict(Compensation._meta.get_field("standard").choices)
        return [
            (
                f"{event.standard}|{event.event_key}",
                _("%(event)s — %(standard)s (%(consumers)s, deadline %(deadline)s)")
                % {
                    "event": event.event_key,
                    "standard": labels[event.standard],
                    "consumers": ngettext("%d consumer", "%d consumers", event.consumers)
                    % event.consumers,
                    "deadline": moment_text(event.deadline, event.zone),
                },
            )
            for event in selectors.exemption_events_open(compensations=compensations)
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        events = self._events(request)
        form = ExemptionFileForm(
            request.POST if request.method == "POST" else None,
            events=events,
            initial={"event": request.GET.get("event")},
        )
        if request.method == "POST" and form.is_valid():
            standard, event_key = form.cleaned_data["event"].split("|", 1)
            try:
                exemption = standards.exemption_file(
                    standard=standard,
                    event_key=event_key,
                    justification=form.cleaned_data["justification"],
                    actor=request.user,
                )
            except DomainError as refused:
                form.add_error(None, refused.message)
            else:
                self.audit(request, exemption, "exemption:file")
                messages.success(
                    request, _("Exemption filed. Its compensations are held until it is decided.")
                )
                return redirect(reverse("admin:outages_exemptionrequest_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("File a force-majeure exemption"),
            "form": form,
            "button": _("File the exemption"),
            "step": "exemption",
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/outages/outage/step.html", context)

    def _decide(self, request, queryset, approve: bool):
        for exemption in queryset:
            try:
                _exemption, cancelled = standards.exemption_decide(
                    exemption_id=exemption.pk, approve=approve, actor=request.user
                )
            except DomainError as refused:
                messages.error(request, f"Exemption {exemption.pk}: {refused.message}")
            else:
                cancelled_text = (
                    ngettext("%d compensation cancelled", "%d compensations cancelled", cancelled)
                    % cancelled
                )
                verdict = f"approved; {cancelled_text}" if approve else "rejected"
                messages.success(request, f"Exemption {exemption.pk} {verdict}.")

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("outages.decide_exemptionrequest")

    @admin.action(
        description=gettext_lazy("Approve the selected requests (cancels their compensation)"),
        permissions=["decide"],
    )
    def approve(self, request, queryset):
        self._decide(request, queryset, approve=True)

    @admin.action(description=gettext_lazy("Reject the selected requests"), permissions=["decide"])
    def reject(self, request, queryset):
        self._decide(request, queryset, approve=False)


@admin.register(Disconnection)
class DisconnectionAdmin(UtilityScopedAdmin):
    """Disconnect orders, to mark one as wrongful. (RelayCommand's own admin belongs to billing.)"""

    utility_path = "account__utility"
    list_display = [
        "meter",
        "account",
        "reason",
        "status",
        "created_at_local",
        "completed_at_local",
    ]
    list_filter = ["status", "reason", "account__utility"]
    search_fields = ["meter__serial", "account__consumer_id"]
    list_select_related = ["meter", "account__utility"]
    actions = ["mark_wrongful"]
    created_at_local = local_column(
        "created_at", description=gettext_lazy("Ordered (local)"), utility="account__utility"
    )
    completed_at_local = local_column(
        "completed_at", description=gettext_lazy("Done (local)"), utility="account__utility"
    )

    def get_queryset(self, request):
        return super().get_queryset(request).filter(action=RelayCommand.Action.DISCONNECT)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in RelayCommand._meta.fields]

    @admin.action(
        description=gettext_lazy("Mark as wrongful: compensate and reconnect now"),
        permissions=["change"],
    )
    def mark_wrongful(self, request, queryset):
        for command in queryset:
            try:
                compensation, reconnect = standards.wrongful_disconnection_record(
                    command_id=command.pk, actor=request.user
                )
            except DomainError as refused:
                messages.error(request, f"{command.meter}: {refused.message}")
                continue
            owed = (
                f"{utility_money(compensation.amount, compensation.utility)} compensation recorded"
                if compensation
                else "no standards policy, so no compensation"
            )
            reconnection = (
                "reconnection ordered"
                if reconnect
                else "reconnection follows once the command in flight is answered"
            )
            messages.success(request, f"{command.meter}: {owed}; {reconnection}.")
