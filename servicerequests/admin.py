"""The service-request desk: work queues with deadlines and what is overdue, assignment, replies,
status changes and cost estimates. Staff see only their utilities' requests (UtilityScopedAdmin)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.search import account_ids_find
from core.admin import (
    HistoryInline,
    MoneyForm,
    UtilityScopedAdmin,
    money_column,
    staff_utility_ids,
)
from core.errors import DomainError
from core.money import utility_money
from core.timebuckets import moment_text
from servicerequests import services
from servicerequests.apis import attachment_response
from servicerequests.models import (
    Attachment,
    ConnectionPolicy,
    OpeningHours,
    RequestEvent,
    RequestType,
    ServiceRequest,
)

S = ServiceRequest.Status
PERMISSION = "servicerequests.process_servicerequest"


def _local(value: datetime | None, zone) -> str:
    return moment_text(value, zone) if value else "-"


@admin.register(RequestType)
class RequestTypeAdmin(UtilityScopedAdmin):
    list_display = [
        "name_en",
        "code",
        "utility",
        "takes_estimate",
        "standard",
        "target_working_days",
        "is_active",
    ]
    list_filter = ["utility", "takes_estimate", "standard", "is_active"]
    search_fields = ["code", "name_en", "name_ar", "name_hi"]


class ConnectionPolicyForm(MoneyForm):
    money_fields = ("amount", "amount_per_day")


@admin.register(ConnectionPolicy)
class ConnectionPolicyAdmin(UtilityScopedAdmin):
    form = ConnectionPolicyForm
    list_display = [
        "utility",
        "low_voltage_days",
        "medium_voltage_days",
        "amount_text",
        "amount_per_day_text",
    ]
    list_select_related = ["utility"]
    amount_text = money_column("amount", description="Amount")
    amount_per_day_text = money_column("amount_per_day", description="Amount per day")


@admin.register(OpeningHours)
class OpeningHoursAdmin(UtilityScopedAdmin):
    list_display = ["utility", "day", "opens", "closes"]
    list_filter = ["utility", "weekday"]
    list_select_related = ["utility"]

    @admin.display(description="Day", ordering="weekday")
    def day(self, obj):
        return calendar.day_name[obj.weekday]

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only: the hours as staff read them, in the utility's zone.
            return ["utility", "day", "opens_local", "closes_local"]
        return super().get_fields(request, obj)

    @admin.display(description="Opens")
    def opens_local(self, obj):
        return f"{obj.opens:%H:%M} {obj.utility.timezone}"

    @admin.display(description="Closes")
    def closes_local(self, obj):
        return f"{obj.closes:%H:%M} {obj.utility.timezone}"


class OverdueFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue"), ("soon", "Due within 2 days"), ("no", "On time")]

    def queryset(self, request, queryset):
        now = timezone.now()
        open_ = queryset.filter(status__in=ServiceRequest.OPEN)
        if self.value() == "yes":
            return open_.filter(deadline_at__lte=now)
        if self.value() == "soon":
            return open_.filter(deadline_at__gt=now, deadline_at__lte=now + timedelta(days=2))
        if self.value() == "no":
            return queryset.exclude(status__in=ServiceRequest.OPEN, deadline_at__lte=now)
        return queryset


class EventInline(HistoryInline):
    model = RequestEvent
    fields = ["at", "kind", "change", "actor", "text", "visible_to_consumer"]
    verbose_name_plural = "Timeline"

    @admin.display(description="Status")
    def change(self, event):
        labels = dict(S.choices)
        if not event.to_status:
            return "-"
        before = labels.get(event.from_status, event.from_status)
        after = labels.get(event.to_status, event.to_status)
        return f"{before} → {after}" if before else after


class AttachmentInline(HistoryInline):
    model = Attachment
    fields = ["download", "content_type", "size", "uploaded_by", "created_at"]

    @admin.display(description="File")
    def download(self, obj):
        url = reverse(
            "admin:servicerequests_servicerequest_attachment", args=[obj.request_id, obj.pk]
        )
        return format_html('<a href="{}">{}</a>', url, obj.original_name)


class MoveForm(forms.Form):
    status = forms.ChoiceField(label="New status")
    text = forms.CharField(
        required=False,
        label="Reply to the consumer (shown in the app)",
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=services.TEXT_MAX,
    )

    def __init__(self, *args, request_obj: ServiceRequest, **kwargs):
        super().__init__(*args, **kwargs)
        # Nothing is preselected: a browser picks the first option, and sorted by code that was
        # "Rejected". Staff choose on purpose; an unchosen submit is a form error (the field is
        # required). The statuses follow the workflow's order, so rejection comes last.
        allowed = services.TRANSITIONS.get(request_obj.status, set())
        self.fields["status"].choices = [("", "— choose —")] + [
            (status.value, status.label) for status in S if status in allowed
        ]


class ReplyForm(forms.Form):
    text = forms.CharField(
        label="Reply to the consumer (shown in the app)",
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=services.TEXT_MAX,
    )


class EstimateForm(forms.Form):
    amount = forms.CharField(label="Amount", max_length=32)
    note = forms.CharField(
        required=False,
        label="What it covers (shown to the consumer)",
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=services.TEXT_MAX,
    )


# step: (form, title, button)
STEPS = {
    "move": (MoveForm, "Change status", "Change status and notify the consumer"),
    "reply": (ReplyForm, "Reply", "Send the reply"),
    "estimate": (EstimateForm, "Issue cost estimate", "Issue the estimate and notify"),
}


def steps_for(obj: ServiceRequest) -> list[str]:
    steps = []
    if services.TRANSITIONS.get(obj.status):
        steps.append("move")
    if obj.status not in services.CLOSED:
        steps.append("reply")
    if obj.type.takes_estimate and obj.status == S.UNDER_REVIEW:
        steps.append("estimate")
    return steps


@admin.register(ServiceRequest)
class ServiceRequestAdmin(UtilityScopedAdmin):
    list_display = [
        "id",
        "type",
        "account",
        "status",
        "assigned_to",
        "submitted",
        "deadline",
        "overdue",
    ]
    list_display_links = ["id", "type"]
    list_filter = [
        "status",
        OverdueFilter,
        ("type", admin.RelatedOnlyFieldListFilter),
        ("assigned_to", admin.RelatedOnlyFieldListFilter),
        "utility",
    ]
    # The box searches by what a caller gives (get_search_results); Django shows it for these.
    search_fields = ["=id"]
    search_help_text = (
        "Request number (#12), or the consumer ID, meter serial, registered mobile (any format), "
        "receipt number or payment code of its account."
    )
    list_select_related = ["type", "account", "utility", "assigned_to"]
    ordering = ["deadline_at", "created_at"]
    actions = ["assign_to_me"]
    inlines = [EventInline, AttachmentInline]
    fields = [
        "workflow",
        "utility",
        "account",
        "type",
        "status",
        "assigned_to",
        "answers",
        "description",
        "estimate",
        "estimate_note",
        "estimate_issued_at",
        "paid_at",
        "deadline_working_days",
        "deadline",
        "deadline_missed_at",
        "completed_at",
        "created_at",
    ]
    readonly_fields = [f for f in fields if f != "assigned_to"]

    def has_add_permission(self, request):
        return False  # consumers open requests in the app

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        """Exact keys on indexes, never a scan: the accounts the term names (billing.search,
        within the staff member's utilities), or the request's own number."""
        term = search_term.strip()
        if not term:
            return queryset, False
        ids = account_ids_find(term=term, utility_ids=staff_utility_ids(request.user))
        match = Q(account_id__in=ids)
        number = term.removeprefix("#")
        if number.isdigit() and len(number) <= 18:
            match |= Q(pk=int(number))
        return queryset.filter(match), False

    # --- Display --------------------------------------------------------------------------

    estimate = money_column("estimate_amount", description="Estimate")

    @admin.display(description="Submitted (local)", ordering="created_at")
    def submitted(self, obj):
        return _local(obj.created_at, obj.utility.zone)

    @admin.display(description="Deadline (local)", ordering="deadline_at")
    def deadline(self, obj):
        return _local(obj.deadline_at, obj.utility.zone)

    @admin.display(description="Overdue", boolean=True)
    def overdue(self, obj):
        return obj.is_overdue()

    @admin.display(description="Answers")
    def answers(self, obj):
        return format_html_join(
            "", "<div><strong>{}</strong>: {}</div>", ((k, v) for k, v in obj.details.items())
        )

    @admin.display(description="Actions")
    def workflow(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        links = [
            (reverse(f"admin:servicerequests_servicerequest_{step}", args=[obj.pk]), STEPS[step][1])
            for step in steps_for(obj)
        ]
        if not links:
            return "Closed."
        return format_html_join(" ", '<a class="button" href="{}">{}</a>', links)

    # --- Assignment (list action and the change form's field) ------------------------------

    @admin.action(description="Assign to me", permissions=["process"])
    def assign_to_me(self, request, queryset):
        for obj in queryset:
            services.request_assign(request_id=obj.pk, assignee=request.user, actor=request.user)
        self.message_user(request, f"{queryset.count()} request(s) assigned to you.")

    def has_process_permission(self, request):
        return request.user.has_perm(PERMISSION)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "assigned_to":
            from accounts.models import User

            allowed = staff_utility_ids(request.user)
            staff = User.objects.filter(is_staff=True)
            if allowed is not None:
                staff = staff.filter(staff_memberships__utility_id__in=allowed).distinct()
            kwargs["queryset"] = staff
            return super(UtilityScopedAdmin, self).formfield_for_foreignkey(
                db_field, request, **kwargs
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if "assigned_to" in form.changed_data:
            try:
                services.request_assign(
                    request_id=obj.pk, assignee=obj.assigned_to, actor=request.user
                )
            except DomainError as refused:
                self.message_user(request, refused.message, messages.ERROR)
                return
            self.audit(request, obj, "assign", {"assigned_to": obj.assigned_to_id})

    # --- The workflow ---------------------------------------------------------------------

    def get_urls(self):
        urls = [
            path(
                f"<path:object_id>/{step}/",
                self.admin_site.admin_view(self.step_view),
                {"step": step},
                name=f"servicerequests_servicerequest_{step}",
            )
            for step in STEPS
        ]
        urls.append(
            path(
                "<path:object_id>/attachments/<int:attachment_id>/",
                self.admin_site.admin_view(self.attachment_view),
                name="servicerequests_servicerequest_attachment",
            )
        )
        return urls + super().get_urls()

    def attachment_view(self, request, object_id, attachment_id):
        obj = self.get_object(request, object_id)
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404
        attachment = obj.attachments.filter(pk=attachment_id).first()
        if attachment is None:
            raise Http404
        return attachment_response(attachment)

    def step_view(self, request, object_id, step):
        obj = self.get_object(request, object_id)
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        form_class, title, button = STEPS[step]
        extra = {"request_obj": obj} if step == "move" else {}
        form = form_class(request.POST if request.method == "POST" else None, **extra)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                if step == "move":
                    services.request_transition(
                        request_id=obj.pk,
                        to_status=data["status"],
                        actor=request.user,
                        text=data["text"],
                    )
                elif step == "reply":
                    services.request_reply(request_id=obj.pk, actor=request.user, text=data["text"])
                else:
                    services.estimate_issue(
                        request_id=obj.pk,
                        amount=data["amount"],
                        note=data["note"],
                        actor=request.user,
                    )
            except DomainError as refused:
                for field, problems in refused.fields.items():
                    name = field if field in form.fields else None
                    for problem in problems:
                        form.add_error(name, problem["message"])
                if not refused.fields:
                    form.add_error(None, refused.message)
            else:
                self.audit(request, obj, step, data)
                self.message_user(request, f"{title}: done.")
                return redirect(
                    reverse("admin:servicerequests_servicerequest_change", args=[obj.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{title}: request #{obj.pk}",
            "obj": obj,
            "form": form,
            "button": button,
            "currency": obj.utility.currency,
            "estimate": utility_money(obj.estimate_amount, obj.utility)
            if obj.estimate_amount is not None
            else None,
            "deadline_local": _local(obj.deadline_at, obj.utility.zone),
        }
        return TemplateResponse(request, "admin/servicerequests/servicerequest/step.html", context)
