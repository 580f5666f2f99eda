import re

from django import forms
from django.core.validators import RegexValidator

from ledger import chain

# The largest seq the ledger serves: larger values would overflow the database's integer and answer a 500.
SEQ_MAX = chain.JSON_INT_MAX

_kind = RegexValidator(
    re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*\.?$"),
    "A kind is dotted lowercase words, such as ledger.transfer, or a prefix ending in '.', such as ledger.",
)
_actor = RegexValidator(
    re.compile(r"^[a-z_]+(:[0-9]+)?$"), "An actor is user:<id>, org:<id>, dao:<id> or system."
)


class EntryFilterForm(forms.Form):
    """The explorer's GET filters; every field may be left empty."""

    kind = forms.CharField(
        required=False, max_length=100, validators=[_kind], help_text="exact, or a prefix ending in '.'"
    )
    actor = forms.CharField(required=False, max_length=64, validators=[_actor])
    seq_min = forms.IntegerField(required=False, min_value=0, max_value=SEQ_MAX, label="From seq")
    seq_max = forms.IntegerField(required=False, min_value=0, max_value=SEQ_MAX, label="To seq")

    def clean(self) -> dict:
        cleaned = super().clean()
        low, high = cleaned.get("seq_min"), cleaned.get("seq_max")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError("“From seq” must not be larger than “To seq”.")
        return cleaned

    def filters(self) -> dict:
        """The cleaned values as keyword arguments for selectors.entry_list (empty values left out)."""
        return {name: value for name, value in self.cleaned_data.items() if value not in ("", None)}
