"""The tamper work queue: each utility's meters that reported tampering, a bypass or an overload,
one case per meter, the newest first. Staff take a case, send an inspection, dismiss or resolve it
with a note, or, where the utility removes meters on such grounds (Egypt), record it as the ground
for removing a postpaid meter with its events as evidence. The rules are billing.tamper's."""

from __future__ import annotations

from contextvars import ContextVar

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from billing import tamper
from billing.admin.pages import form_errors_add
from billing.models import RemovalOrder, TamperCase
from core.admin import ReadOnlyMixin, UtilityScopedAdmin, permission_require
from core.errors import DomainError
from core.timebuckets import moment_text
from meters.models import MeterEvent

KIND_LABELS = dict(MeterEvent.Kind.choices)
# The request whose case page is being drawn: its work links offer what that staff member may do.
_viewer: ContextVar = ContextVar("tamper_case_viewer", default=None)
WORK = "billing.change_tampercase"
RECORD = "billing.add_removalorder"  # as the removal record page (billing/admin/removals.py)


class KindFilter(admin.SimpleListFilter):
    title = _("kind of event")
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(kind, KIND_LABELS[kind]) for kind in sorted(tamper.CASE_KINDS)]

    def queryset(self, request, queryset):
        if self.value() in tamper.CASE_KINDS:
            # The kinds are a JSON list: its text holds each kind in quotes (SQLite and
            # PostgreSQL alike).
            return queryset.filter(kinds__icontains=f'"{self.value()}"')
        return queryset


class OpenFilter(admin.SimpleListFilter):
    """Open cases (to review or inspection sent): the dashboard's figure links here."""

    title = _("open")
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", _("Open")), ("no", _("Closed"))]

    def queryset(self, request, queryset):
        open_ = Q(status__in=TamperCase.OPEN_STATUSES)
        if self.value() == "yes":
            return queryset.filter(open_)
        if self.value() == "no":
            return queryset.exclude(open_)
        return queryset


class CloseForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[
            (TamperCase.Status.DISMISSED, _("Dismiss: nothing wrong was found")),
            (TamperCase.Status.RESOLVED, _("Resolve: it was put right")),
        ],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), help_text=_("What was found, kept with the case.")
    )


class RemovalForm(forms.Form):
    ground = forms.ChoiceField()
    note = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Optional: what the inspection found, added to the events as evidence."),
    )

    def __init__(self, *args, grounds=(), **kwargs):
        super().__init__(*args, **kwargs)
        labels = dict(RemovalOrder.Ground.choices)
        self.fields["ground"].choices = [(g, labels[g]) for g in grounds]


class NoInputForm(forms.Form):
    """Taking a case or sending an inspection needs only the press of the button."""


# step: (form, title, button, permission)
STEPS = {
    "assign": (NoInputForm, _("Assign to me"), _("Take this case"), WORK),
    "inspect": (NoInputForm, _("Mark inspecting"), _("An inspection is sent"), WORK),
    "close": (CloseForm, _("Dismiss or resolve"), _("Close the case"), WORK),
    "removal": (RemovalForm, _("Record as grounds for removal"), _("Record the ground"), RECORD),
}


@admin.register(TamperCase)
class TamperCaseAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    list_display = [
        "case",
        "status",
        "meter",
        "account_id_text",
        "kinds_text",
        "events",
        "last_event_at",
        "assigned_to",
    ]
    list_display_links = ["case"]
    list_filter = [OpenFilter, "status", KindFilter, "utility"]
    list_select_related = ["meter", "account", "assigned_to"]
    search_fields = ["=meter__serial", "=account__consumer_id"]
    search_help_text = _("Meter serial or consumer ID, exactly.")
    fields = [
        "case",
        "status",
        "meter",
        "account",
        "kinds_text",
        "events",
        "first_event_at",
        "last_event_at",
        "opened_at",
        "assigned_to",
        "note",
        "closed_at",
        "closed_by",
        "removal_link",
        "work",
        "event_list",
    ]
    readonly_fields = fields

    @admin.display(description=_("Case"), ordering="pk")
    def case(self, obj):
        return f"#{obj.pk}"

    @admin.display(description=_("Account"), ordering="account__consumer_id")
    def account_id_text(self, obj):
        return obj.account.consumer_id if obj.account_id else "—"

    @admin.display(description=_("Kinds"))
    def kinds_text(self, obj):
        return ", ".join(str(KIND_LABELS.get(kind, kind)) for kind in obj.kinds)

    @admin.display(description=_("Removal order"))
    def removal_link(self, obj):
        if obj.removal_order_id is None:
            return "-"
        url = reverse("admin:billing_removalorder_change", args=[obj.removal_order_id])
        return format_html('<a href="{}">{}</a>', url, obj.removal_order)

    @admin.display(description=_("Work the case"))
    def work(self, obj):
        if obj.status not in TamperCase.OPEN_STATUSES:
            return _("Closed.")
        request = _viewer.get()
        steps = [
            (reverse(f"admin:billing_tampercase_{step}", args=[obj.pk]), step, title)
            for step, (_form, title, _button, perm) in STEPS.items()
            if request is not None and request.user.has_perm(perm)
        ]
        if not steps:
            return "-"
        return format_html_join(
            " ", '<a class="button" href="{}" id="case-{}">{}</a>', ((u, s, t) for u, s, t in steps)
        )

    @admin.display(description=_("Events (local time)"))
    def event_list(self, obj):
        zone = obj.utility.zone
        rows = [
            (
                KIND_LABELS.get(event.kind, event.kind),
                moment_text(event.occurred_at, zone, seconds=True),
                event.code or "-",
                event.pk,
            )
            for event in tamper.case_events(obj, limit=100)
        ]
        if not rows:
            return "-"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            '<table id="case-events"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            _("Kind"),
            _("When"),
            _("Code"),
            _("Event"),
            body,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        token = _viewer.set(request)
        try:
            return super().change_view(request, object_id, form_url, extra_context)
        finally:
            _viewer.reset(token)

    # --- The steps --------------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                f"<int:pk>/{step}/",
                self.admin_site.admin_view(self.step_view),
                {"step": step},
                name=f"billing_tampercase_{step}",
            )
            for step in STEPS
        ] + super().get_urls()

    def step_view(self, request, pk: int, step: str):
        case = self.get_queryset(request).select_related("utility", "meter").filter(pk=pk).first()
        if case is None:
            return redirect(reverse("admin:billing_tampercase_changelist"))
        form_class, title, button, perm = STEPS[step]
        permission_require(request, perm)
        data = request.POST if request.method == "POST" else None
        refusal = None
        if step == "removal":
            form = RemovalForm(data, grounds=tamper.case_grounds(case))
            refusal = tamper.removal_refusal(case)
        else:
            form = form_class(data)
        if request.method == "POST" and form.is_valid():
            try:
                message = self._run(request, case, step, form.cleaned_data)
            except DomainError as exc:
                form_errors_add(form, exc)
            else:
                self.message_user(request, message)
                return redirect(reverse("admin:billing_tampercase_change", args=[case.pk]))
        if refusal and request.method != "POST":
            self.message_user(request, refusal, messages.WARNING)
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{title}: {case} ({case.meter.serial})",
                "form": form,
                "submit_label": button,
            },
        )

    def _run(self, request, case, step, data) -> str:
        actor = request.user
        if step == "assign":
            case = tamper.tamper_case_assign(case_id=case.pk, actor=actor)
            message = _("The case is yours.")
        elif step == "inspect":
            case = tamper.tamper_case_inspect(case_id=case.pk, actor=actor)
            message = _("Marked: an inspection is sent.")
        elif step == "close":
            case = tamper.tamper_case_close(
                case_id=case.pk, outcome=data["outcome"], note=data["note"], actor=actor
            )
            message = _("The case is closed: %(status)s.") % {
                "status": case.get_status_display().lower()
            }
        else:
            case = tamper.tamper_case_removal_record(
                case_id=case.pk, actor=actor, ground=data["ground"], note=data["note"]
            )
            order = case.removal_order
            message = _(
                "%(ground)s recorded for %(account)s with the case's events as evidence: the "
                "removal is due; an approver confirms it when the meter is replaced."
            ) % {"ground": order.get_ground_display(), "account": case.account.consumer_id}
        self.audit(request, case, f"tamper:{step}", {"status": case.status})
        return message
