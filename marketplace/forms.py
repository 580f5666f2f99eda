"""The marketplace's page forms: they check the shape of what a person typed; the services decide the rest."""

import os
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings

from marketplace import services
from marketplace.models import License

# Prices are typed in tokens with at most two decimals; the services take minor units (1 token = 100).
_TOKEN = {"max_digits": 14, "decimal_places": 2}


def tokens_to_minor(value: Decimal | None) -> int | None:
    return None if value is None else int(value * 100)


class DatasetFilterForm(forms.Form):
    """The browse page's GET filters; every field may be left empty."""

    q = forms.CharField(required=False, max_length=100, label="Search")
    tier = forms.ChoiceField(
        required=False,
        choices=[("", "Any access"), ("download", "Download"), ("compute", "Compute-only")],
        label="Access",
    )
    tag = forms.CharField(required=False, max_length=50)
    price_max = forms.DecimalField(required=False, min_value=0, label="Max price (tokens)", **_TOKEN)

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for selectors.dataset_list_public (empty values left out)."""
        data = self.cleaned_data
        filters = {name: data[name].strip() for name in ("q", "tag") if data[name].strip()}
        if data["tier"]:
            filters["tier"] = data["tier"]
        if data["price_max"] is not None:
            filters["price_max"] = tokens_to_minor(data["price_max"])
        return filters


def _check_upload(upload) -> None:
    if os.path.splitext(upload.name or "")[1].lower() not in services.FORMATS:
        raise forms.ValidationError("Upload a .csv or .jsonl file.")
    if upload.size == 0:
        raise forms.ValidationError("The file is empty.")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise forms.ValidationError(
            f"The file is larger than the limit of {settings.UPLOAD_MAX_BYTES:,} bytes."
        )


class VersionUploadForm(forms.Form):
    file = forms.FileField(help_text=".csv or .jsonl")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        _check_upload(upload)
        return upload


class DatasetCreateForm(VersionUploadForm):
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    tags = forms.CharField(required=False, max_length=400, help_text="comma separated, e.g. finance, survey")
    terms_preset = forms.ChoiceField(
        choices=[(name, name.capitalize()) for name in services.TERM_PRESETS], label="Terms"
    )
    terms_text = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}), label="Additional terms"
    )
    price_download = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), label="Download price (tokens)", **_TOKEN
    )
    price_compute = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), label="Compute-only price (tokens)", **_TOKEN
    )

    field_order = ["title", "description", "tags", "terms_preset", "terms_text", "price_download"]

    def clean_tags(self) -> list[str]:
        tags = [t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()]
        if len(tags) > 20:
            raise forms.ValidationError("At most 20 tags.")
        if any(len(t) > 40 for t in tags):
            raise forms.ValidationError("A tag is at most 40 characters.")
        return tags

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if (
            "price_download" in cleaned
            and "price_compute" in cleaned
            and cleaned["price_download"] is None
            and cleaned["price_compute"] is None
        ):
            raise forms.ValidationError("Offer at least one tier: give a download or a compute-only price.")
        return cleaned

    def listing(self) -> dict[str, Any]:
        """Keyword arguments for services.dataset_create, less the owner and the terms."""
        data = self.cleaned_data
        return {
            "title": data["title"],
            "description": data["description"],
            "tags": data["tags"],
            "price_download": tokens_to_minor(data["price_download"]),
            "price_compute": tokens_to_minor(data["price_compute"]),
        }


class PurchaseForm(forms.Form):
    tier = forms.ChoiceField(choices=License.Tier.choices)


class AnalysisForm(forms.Form):
    analysis = forms.ChoiceField(
        choices=[
            ("kmeans", "k-means clusters"),
            ("dbscan", "DBSCAN clusters"),
            ("pca", "Principal components"),
            ("isolation_forest", "Outliers (isolation forest)"),
        ]
    )
    k = forms.IntegerField(
        required=False, min_value=2, max_value=50, label="k", help_text="k-means only; empty: chosen for you"
    )
