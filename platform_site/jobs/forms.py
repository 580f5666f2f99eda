"""Page forms made from job kinds' params serializers (see platform_site.jobs.registry)."""

from decimal import Decimal
from typing import Any

from django import forms
from rest_framework import serializers
from rest_framework.fields import empty


def form_field(
    name: str, field: serializers.Field, texts: dict[str, tuple[str, str]], choice_labels: dict[str, str]
) -> forms.Field:
    """A page form's field mirroring a job kind's params serializer field (its type, bounds, default and help
    text), so that a page and the API accept the same. `texts` names a field's label and help, `choice_labels`
    the words for its choices; other types are text fields, parsed by the form that uses them."""
    label, help_text = texts.get(name, (name.replace("_", " ").capitalize(), ""))
    help_text = help_text or str(field.help_text or "")
    has_default = field.default is not empty
    common: dict[str, Any] = {
        "label": label,
        "help_text": help_text,
        "required": field.required and not has_default,
        "initial": field.default if has_default else None,
    }
    if isinstance(field, serializers.ChoiceField):
        choices = [
            (value, choice_labels.get(str(value), str(display))) for value, display in field.choices.items()
        ]
        return forms.ChoiceField(choices=choices, **common)
    if isinstance(field, serializers.BooleanField):
        return forms.BooleanField(**{**common, "required": False})
    bounds = {"min_value": getattr(field, "min_value", None), "max_value": getattr(field, "max_value", None)}
    if isinstance(field, serializers.IntegerField):
        return forms.IntegerField(**bounds, **common)
    if isinstance(field, serializers.FloatField):
        return forms.FloatField(**bounds, widget=forms.NumberInput(attrs={"step": "any"}), **common)
    if isinstance(field, serializers.DecimalField):
        step = str(Decimal(1).scaleb(-field.decimal_places)) if field.decimal_places else "1"
        return forms.DecimalField(
            **bounds, max_digits=field.max_digits, decimal_places=field.decimal_places,
            widget=forms.NumberInput(attrs={"step": step}), **common,
        )  # fmt: skip
    return forms.CharField(max_length=getattr(field, "max_length", None), **common)
