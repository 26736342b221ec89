"""The billing admin's own form pages (move out and in, removal grounds, confirmations), drawn
in the admin's frame with the shared template admin/billing/form.html."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.db import models
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from accounts.models import ConsumerAccount
from core.admin import scope_queryset
from core.errors import DomainError

ACCOUNT_HELP = _(
    "Type the consumer ID on the bill, a meter serial, the registered mobile, a receipt number or "
    "a payment code, and pick the account."
)


def account_field(
    source: type[models.Model], *, field: str = "account", required: bool = True, **kwargs
) -> forms.ModelChoiceField:
    """An account chosen the way staff know it: Django's autocomplete (select2) over
    the account search (billing.admin.search), which takes every key in
    ACCOUNT_HELP. `source` is a model whose `field` is a foreign key to ConsumerAccount (the
    autocomplete view asks for it). The queryset is scoped per request by `accounts_scope`."""
    return forms.ModelChoiceField(
        queryset=ConsumerAccount.objects.select_related("utility"),
        widget=AutocompleteSelect(
            source._meta.get_field(field),
            admin.site,
            # select2 reads its options from data- attributes: search from the third character.
            attrs={"data-minimum-input-length": 3},
        ),
        required=required,
        help_text=kwargs.pop("help_text", ACCOUNT_HELP),
        **kwargs,
    )


def accounts_scope(form: forms.Form, request, *names: str) -> None:
    """Limit the form's account fields to the staff member's utilities: an id of another
    utility's account is "Select a valid choice", as any other unknown one."""
    for name in names:
        form.fields[name].queryset = scope_queryset(form.fields[name].queryset, request.user)


class FormPageMixin:
    """For a ModelAdmin with custom views: `_render(request, form, title)` draws the form."""

    def _render(self, request, form, title: str):
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": title,
                "form": form,
            },
        )


def next_url(request) -> str | None:
    """Where a form posted from another admin page (the account page) sends staff back to:
    a path on this site only."""
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


def form_errors_add(form: forms.Form, exc: DomainError) -> None:
    """A service's refusal on the form: each field error beside its field, else the message."""
    placed = False
    for field, errors in exc.fields.items():
        if field in form.fields:
            for error in errors:
                form.add_error(field, error["message"])
            placed = True
    if not placed:
        form.add_error(None, exc.message)
