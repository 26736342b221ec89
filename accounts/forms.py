from __future__ import annotations

from django import forms

from accounts.models import ConsumerAccount, Utility
from accounts.services import account_status_problem
from core.admin import MoneyForm
from core.errors import DomainError
from core.phone import phone_normalize

MAX_IMPORT_BYTES = 20 * 1024 * 1024


class ConsumerImportForm(forms.Form):
    utility = forms.ModelChoiceField(queryset=Utility.objects.all())
    file = forms.FileField(
        help_text=(
            "CSV, UTF-8, with a header row: consumer_id, registered_mobile, name, and optionally "
            "premises_address and status (active, suspended, closed). Nothing is imported if any row is wrong."
        )
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError("The file is larger than 20 MB; split it.")
        return upload


class ConsumerAccountForm(forms.ModelForm):
    """The admin's account form: the registered mobile is read as a mobile of the utility's country
    and kept in E.164, the form the links compare."""

    class Meta:
        model = ConsumerAccount
        fields = [
            "utility",
            "consumer_id",
            "registered_mobile",
            "name",
            "sanctioned_load_kw",
            "premises_address",
            "status",
        ]

    def clean(self):
        cleaned = super().clean()
        problem = account_status_problem(account=self.instance, status=cleaned.get("status"))
        if problem:
            self.add_error("status", problem)
        utility, raw = cleaned.get("utility"), cleaned.get("registered_mobile")
        if utility and raw:
            try:
                cleaned["registered_mobile"] = phone_normalize(raw=raw, region=utility.country)
            except DomainError as exc:
                self.add_error("registered_mobile", exc.message)
        return cleaned


class UtilityForm(MoneyForm):
    """The admin's utility form: its money (the smallest top-up) in the currency's own decimals,
    which the same form sets."""

    money_fields = ("min_topup",)

    def minor_unit(self, data: dict) -> int | None:
        minor_unit = data.get("currency_minor_unit")
        if minor_unit is None and self.instance.pk:
            minor_unit = self.instance.currency_minor_unit
        return minor_unit
