from __future__ import annotations

from django import forms

from accounts.models import Utility

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
