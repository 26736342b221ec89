"""Admin for staff roles and the audit trail, and the mixin every utility-owned admin uses:
staff see and choose only their utilities' rows, and what they do is audited."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path, unquote
from django.contrib.admin.widgets import AdminSplitDateTime
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from rest_framework_simplejwt.token_blacklist import admin as token_admin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from core.models import ROLE_GROUPS, AuditEntry, StaffMembership
from core.money import minor_unit_exponent, money_digits, money_text
from core.timebuckets import moment_text

# How to reach the Utility from a model's rows, for models other apps own. A model with a
# `utility` foreign key needs no entry.
UTILITY_PATHS: dict[str, str] = {
    "accounts.utility": "pk",
    "accounts.consumeraccount": "utility",
    "accounts.accountlink": "account__utility",
    "meters.feeder": "area__utility",
    "meters.transformer": "feeder__area__utility",
    "billing.ledgerentry": "account__utility",
    "billing.balance": "account__utility",
    "billing.relaycommand": "account__utility",
    "billing.billingpolicy": "utility",
    "billing.topup": "account__utility",
    "billing.paymentlink": "account__utility",
    "billing.bill": "account__utility",
    "billing.conversion": "account__utility",
    "billing.move": "account__utility",
    "billing.removalorder": "account__utility",
    "accounts.onetimecode": "account__utility",
    "meters.meterassignment": "meter__utility",
    "meters.readingcorrection": "meter__utility",
    "accounts.accountshare": "account__utility",
    "billing.autotopup": "account__utility",
    "billing.autotopuprun": "rule__account__utility",
    "billing.emergencycredit": "account__utility",
    "insight.usagebaseline": "account__utility",
}


def utility_path(model: type[models.Model]) -> str | None:
    label = model._meta.label_lower
    if label in UTILITY_PATHS:
        return UTILITY_PATHS[label]
    concrete = model._meta.concrete_model._meta.label_lower
    if concrete in UTILITY_PATHS:
        return UTILITY_PATHS[concrete]
    try:
        field = model._meta.get_field("utility")
    except Exception:
        return None
    return "utility" if field.is_relation else None


def staff_utility_ids(user) -> list[int] | None:
    """The utilities a staff member works for; None means all (superusers)."""
    if user.is_superuser:
        return None
    cached = getattr(user, "_staff_utility_ids", None)
    if cached is None:
        cached = sorted(
            set(StaffMembership.objects.filter(user=user).values_list("utility_id", flat=True))
        )
        user._staff_utility_ids = cached
    return cached


def staff_zone(user) -> ZoneInfo | None:
    """The one zone every utility of a staff member shares, in which the admin shows them times;
    None for a superuser (who sees every utility) or when their utilities' zones differ (each
    row is then shown in its own utility's zone)."""
    if user.is_superuser or not user.is_staff:
        return None
    cached = getattr(user, "_staff_zone_names", None)
    if cached is None:
        cached = set(
            StaffMembership.objects.filter(user=user).values_list("utility__timezone", flat=True)
        )
        user._staff_zone_names = cached
    return ZoneInfo(next(iter(cached))) if len(cached) == 1 else None


def zone_label(zone=None) -> str:
    """The zone times are shown in, as staff read it next to a time field:
    "Asia/Kuwait (+03)", "Africa/Cairo (EEST)"."""
    zone = zone or timezone.get_current_timezone()
    name = getattr(zone, "key", None) or str(zone)
    abbreviation = timezone.now().astimezone(zone).tzname()
    return name if abbreviation == name else f"{name} ({abbreviation})"


ROW_ZONE = "row_timezone"  # the annotation holding each listed row's utility's IANA zone


def row_zone(obj: models.Model) -> ZoneInfo:
    """The zone a row's times are shown in: its utility's, else the request's."""
    name = getattr(obj, ROW_ZONE, None)
    return ZoneInfo(name) if name else timezone.get_current_timezone()


class ZonedSplitDateTime(AdminSplitDateTime):
    """The admin's date and time inputs with the zone they are read in named beside them: the
    object's utility's (UtilityScopedAdmin activates it on its pages), else the staff member's."""

    def render(self, name, value, attrs=None, renderer=None):
        html = super().render(name, value, attrs, renderer)
        return format_html(
            '{}<p class="help timezone-name">{}</p>',
            html,
            gettext("Time zone: %(zone)s") % {"zone": zone_label()},
        )


def scope_queryset(queryset: models.QuerySet, user, path: str | None = None) -> models.QuerySet:
    allowed = staff_utility_ids(user)
    path = path or utility_path(queryset.model)
    if allowed is None:
        return queryset
    if path is None:  # a model that belongs to no utility: staff of a utility see none of it
        return queryset.none()
    return queryset.filter(**{f"{path}__in": allowed}).distinct()


def permission_require(request, perm: str) -> None:
    """A custom admin view's first line: without `perm` (app_label.codename, granted to roles
    through their groups) the staff member gets the 403 Django's own admin views give."""
    if not request.user.has_perm(perm):
        raise PermissionDenied


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A list filter over a related model (grid areas, utilities, accounts …) offering only the
    staff member's utilities' rows, as the list itself holds: another utility's names never show
    in the sidebar. UtilityScopedAdmin puts it on every related-field filter."""

    def field_choices(self, field, request, model_admin):
        ordering = self.field_admin_ordering(field, request, model_admin)
        allowed = scope_queryset(field.related_model._default_manager.all(), request.user)
        return field.get_choices(
            include_blank=False,
            ordering=ordering,
            limit_choices_to={"pk__in": allowed.values("pk")},
        )


def _plain(value: Any) -> Any:
    """A value as JSON can hold it, for the audit trail."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, models.QuerySet | list | tuple | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def audit_record(
    *, actor, action: str, obj: models.Model, changes: dict | None = None
) -> AuditEntry:
    utility_id = None
    path = utility_path(type(obj))
    if path:
        target: Any = obj
        for part in path.split("__"):
            target = getattr(target, part, None)
            if target is None:
                break
        utility_id = target if isinstance(target, int) else getattr(target, "pk", None)
    return AuditEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        model=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        utility_id=utility_id,
        changes=changes or {},
    )


def _follow(obj: Any, path: str) -> Any:
    for part in path.split("__"):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    return obj


def money_column(field: str, *, description: str, utility: str = "utility"):
    """An admin column or read-only field showing the DecimalField `field` in its utility's
    currency and decimals: "100.00 SAR", "1.500 KWD" (the database keeps 3 decimals for every
    currency). `utility` is the path from the row to its Utility: put it in list_select_related,
    or every row of the list costs a query.

        amount_text = money_column("amount", description="Amount")
    """

    @admin.display(description=description, ordering=field)
    def show(model_admin, obj) -> str:
        value, owner = getattr(obj, field), _follow(obj, utility)
        if value is None or owner is None:
            return "-"
        return money_text(value, currency=owner.currency, minor_unit=owner.currency_minor_unit)

    show.__name__ = f"{field}_text"
    return show


class MoneyForm(forms.ModelForm):
    """A ModelForm whose `money_fields` are in the utility's own decimals: shown as "100.00" for
    SAR (not the stored "100.000"), and refused with more decimals than the currency has, as
    core.money.money_parse refuses them in the API. The utility is the row's `utility` (the one
    chosen in the form first); override `minor_unit` when the row reaches it otherwise."""

    money_fields: tuple[str, ...] = ()

    def minor_unit(self, data: dict) -> int | None:
        utility = data.get("utility")
        if utility is None and getattr(self.instance, "utility_id", None):
            utility = self.instance.utility
        return utility.currency_minor_unit if utility is not None else None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        minor = self.minor_unit({}) if self.instance.pk else None
        if minor is None:
            return
        for name in self.money_fields:
            if name not in self.fields:
                continue
            self.fields[name].widget.attrs["step"] = f"{minor_unit_exponent(minor):f}"
            value = getattr(self.instance, name)
            if value is not None and not self.is_bound:
                self.initial[name] = money_digits(value, minor_unit=minor)

    def clean(self):
        data = super().clean()
        minor = self.minor_unit(data)
        if minor is None:
            return data
        exponent = minor_unit_exponent(minor)
        for name in self.money_fields:
            value = data.get(name)
            if isinstance(value, Decimal) and value != value.quantize(exponent):
                self.add_error(name, f"At most {minor} decimal places for this currency.")
        return data


class ReadOnlyMixin:
    """For records written only by the system (ledgers, audit trails, bills): staff look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class HistoryInline(admin.TabularInline):
    """Rows shown beside their object as its history: read-only, nothing added or deleted here.
    Subclasses set `model` and `fields`."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class UtilityScopedAdmin(admin.ModelAdmin):
    """Use instead of admin.ModelAdmin for anything that belongs to a utility.

    1. Lists, change pages and deletions only reach rows of the staff member's utilities
       (core.StaffMembership); superusers see all. `utility_path` says how a row reaches its
       Utility when it has no `utility` field (e.g. "account__utility").
    2. Foreign-key and many-to-many choices, and the list filters over related models, are
       limited the same way (UTILITY_PATHS says how related models reach their utility).
    3. Every add, change (old and new values), deletion and list action is written to
       core.AuditEntry; custom views call `self.audit(...)`.
    """

    utility_path: str | None = None

    def _path(self) -> str | None:
        return self.utility_path or utility_path(self.model)

    def get_queryset(self, request):
        queryset = scope_queryset(super().get_queryset(request), request.user, self._path())
        path = self._path()
        if path is None:
            return queryset
        # Each row's zone rides along in the list's one query (a join on the utility's primary
        # key), for the date-time columns below.
        zone = "timezone" if path == "pk" else f"{path}__timezone"
        return queryset.annotate(**{ROW_ZONE: F(zone)})

    # --- Times in the row's utility's zone ----------------------------------------------------
    # 4. Every time shows its zone: list columns in each row's utility's zone (a time of day
    #    with the zone's name), and the
    #    change, history and delete pages of an object (read-only fields, inlines, date and time
    #    inputs, with the zone named beside them) in its utility's zone.

    def get_list_display(self, request):
        return [self._zoned(entry) for entry in super().get_list_display(request)]

    def get_list_display_links(self, request, list_display):
        links = super().get_list_display_links(request, list_display)
        return links if links is None else [self._zoned(entry) for entry in links]

    def _zoned(self, entry):
        if not isinstance(entry, str):
            return entry
        try:
            field = self.model._meta.get_field(entry)
        except Exception:
            return entry
        if not isinstance(field, models.DateTimeField | models.TimeField):
            return entry
        columns = self.__dict__.setdefault("_zoned_columns", {})
        if entry not in columns:
            columns[entry] = self._zoned_column(field)
        return columns[entry]

    def _zoned_column(self, field: models.DateTimeField | models.TimeField):
        empty = self.get_empty_value_display()

        @admin.display(description=field.verbose_name, ordering=field.name)
        def show(obj) -> str:
            value = getattr(obj, field.attname)
            if value is None:
                return empty
            if isinstance(field, models.DateTimeField):
                return moment_text(value, row_zone(obj))
            # A time of day (opening hours, quiet hours) is the utility's wall-clock time: its
            # zone's name, since the abbreviation changes with daylight saving.
            return f"{value:%H:%M} {getattr(row_zone(obj), 'key', '')}".strip()

        show.__name__ = field.name  # the column's CSS class stays column-<field>
        return show

    def object_zone(self, request, object_id) -> ZoneInfo | None:
        if object_id is None:
            return None
        obj = self.get_object(request, unquote(object_id))
        return row_zone(obj) if obj is not None and getattr(obj, ROW_ZONE, None) else None

    def _in_zone(self, zone, view, *args, **kwargs):
        if zone is None:
            return view(*args, **kwargs)
        with timezone.override(zone):
            response = view(*args, **kwargs)
            # A TemplateResponse renders after the view returns: render it in the zone.
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._in_zone(
            self.object_zone(request, object_id),
            super().changeform_view,
            request,
            object_id,
            form_url,
            extra_context,
        )

    def history_view(self, request, object_id, extra_context=None):
        return self._in_zone(
            self.object_zone(request, object_id),
            super().history_view,
            request,
            object_id,
            extra_context,
        )

    def delete_view(self, request, object_id, extra_context=None):
        return self._in_zone(
            self.object_zone(request, object_id),
            super().delete_view,
            request,
            object_id,
            extra_context,
        )

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and type(formfield.widget) is AdminSplitDateTime:
            formfield.widget = ZonedSplitDateTime(attrs=formfield.widget.attrs)
        return formfield

    def _limit(self, db_field, kwargs, request):
        queryset = kwargs.get("queryset")
        if queryset is None:
            queryset = db_field.related_model._default_manager.all()
        kwargs["queryset"] = scope_queryset(queryset, request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        self._limit(db_field, kwargs, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        self._limit(db_field, kwargs, request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request):
        return [self._scoped_filter(entry) for entry in super().get_list_filter(request)]

    def _scoped_filter(self, entry):
        if isinstance(entry, str):
            if get_fields_from_path(self.model, entry)[-1].is_relation:
                return (entry, ScopedRelatedFieldListFilter)
        elif isinstance(entry, tuple) and entry[1] is admin.RelatedFieldListFilter:
            return (entry[0], ScopedRelatedFieldListFilter)
        return entry

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        allowed = staff_utility_ids(request.user)
        if allowed and len(allowed) == 1 and self._path() == "utility":
            initial.setdefault("utility", allowed[0])
        return initial

    # --- Audit ----------------------------------------------------------------------------

    def audit(self, request, obj, action: str, changes: dict | None = None) -> AuditEntry:
        return audit_record(actor=request.user, action=action, obj=obj, changes=changes)

    def save_model(self, request, obj, form, change):
        changes = {
            name: [_plain(form.initial.get(name)), _plain(form.cleaned_data.get(name))]
            for name in form.changed_data
        }
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            self.audit(request, obj, "change" if change else "add", changes)

    def delete_model(self, request, obj):
        with transaction.atomic():
            self.audit(request, obj, "delete")
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.audit(request, obj, "delete")
            super().delete_queryset(request, queryset)

    def get_actions(self, request):
        actions = super().get_actions(request)
        return {
            name: (self._audited(func, name), name, description)
            for name, (func, name, description) in actions.items()
        }

    def _audited(self, func, name):
        if name == "delete_selected":  # delete_queryset audits each row
            return func

        def action(modeladmin, request, queryset):
            objects = list(queryset)
            response = func(modeladmin, request, queryset)
            for obj in objects:
                self.audit(request, obj, f"action:{name}")
            return response

        action.__name__ = getattr(func, "__name__", name)
        return action


@admin.register(StaffMembership)
class StaffMembershipAdmin(UtilityScopedAdmin):
    list_display = ["user", "utility", "role", "created_at"]
    list_filter = ["utility", "role"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "user__email"]
    autocomplete_fields = ["user"]

    def save_model(self, request, obj, form, change):
        # The role's group carries its permissions; a member must be staff to use the admin.
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            group, _ = Group.objects.get_or_create(name=ROLE_GROUPS[obj.role])
            obj.user.groups.add(group)
            if not obj.user.is_staff:
                obj.user.is_staff = True
                obj.user.save(update_fields=["is_staff"])


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    list_display = ["at", "actor", "action", "model", "object_repr", "utility"]
    list_filter = ["action", "model", "utility"]
    search_fields = ["object_repr", "object_id", "actor__username", "action"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]


# --- simplejwt's token blacklist: superusers' only ----------------------------------------------
# Signed-in app sessions belong to no utility: a utility's staff never see them, not even with a
# view permission granted by hand; superusers keep them to see and revoke sessions. Importing
# simplejwt's admin (imported above) makes its registrations exist before they are replaced,
# whatever order the admin modules are discovered in.


class SuperuserOnlyMixin:
    """A third-party admin whose rows belong to no utility: shown and opened by superusers only."""

    def has_module_permission(self, request):
        return request.user.is_superuser and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and super().has_delete_permission(request, obj)


class OutstandingTokenAdmin(SuperuserOnlyMixin, token_admin.OutstandingTokenAdmin):
    pass


class BlacklistedTokenAdmin(SuperuserOnlyMixin, token_admin.BlacklistedTokenAdmin):
    pass


for _model, _model_admin in (
    (OutstandingToken, OutstandingTokenAdmin),
    (BlacklistedToken, BlacklistedTokenAdmin),
):
    admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)
