"""The marketplace's page forms: they check the shape of what a person typed; the services decide the rest."""

import os
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings

from marketplace import analyses, services
from marketplace.jobkinds import AnalysisOptions
from marketplace.models import License
from platform_site.jobs.forms import form_field

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
    tag = forms.CharField(required=False, max_length=200, help_text="one or more, comma separated")
    owner = forms.CharField(required=False, max_length=150, label="Seller")
    price_min = forms.DecimalField(required=False, min_value=0, label="Min price (tokens)", **_TOKEN)
    price_max = forms.DecimalField(required=False, min_value=0, label="Max price (tokens)", **_TOKEN)
    rows_min = forms.IntegerField(required=False, min_value=0, max_value=10**15, label="Min rows")
    rows_max = forms.IntegerField(required=False, min_value=0, max_value=10**15, label="Max rows")
    sort = forms.ChoiceField(
        required=False,
        label="Sort by",
        choices=[
            ("", "Best match"),
            ("newest", "Newest"),
            ("oldest", "Oldest"),
            ("price", "Price: low to high"),
            ("-price", "Price: high to low"),
            ("title", "Title"),
            ("most_sold", "Most sold"),
            ("rows", "Most rows"),
        ],
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for low, high, what in (
            ("price_min", "price_max", "price"),
            ("rows_min", "rows_max", "number of rows"),
        ):
            if (
                cleaned.get(low) is not None
                and cleaned.get(high) is not None
                and cleaned[low] > cleaned[high]
            ):
                raise forms.ValidationError(f"The minimum {what} is more than the maximum.")
        return cleaned

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for selectors.dataset_list_public (empty values left out)."""
        data = self.cleaned_data
        filters: dict[str, Any] = {
            name: data[name].strip() for name in ("q", "tag", "owner") if data[name].strip()
        }
        for name in ("tier", "sort"):
            if data[name]:
                filters[name] = data[name]
        for name in ("price_min", "price_max"):
            if data[name] is not None:
                filters[name] = tokens_to_minor(data[name])
        for name in ("rows_min", "rows_max"):
            if data[name] is not None:
                filters[name] = data[name]
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


def privacy_budget_field(**kwargs: Any) -> forms.DecimalField:
    """The total ε that each compute-only licence may spend, bounded as the services bound it."""
    low, high = services.PRIVACY_BUDGET_RANGE
    return forms.DecimalField(
        min_value=low,
        max_value=high,
        max_digits=6,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        **{"label": "Privacy budget per compute-only licence (ε)", **kwargs},
    )


class DatasetCreateForm(VersionUploadForm):
    title = forms.CharField(max_length=services.TITLE_MAX)
    description = forms.CharField(
        required=False, max_length=services.DESCRIPTION_MAX, widget=forms.Textarea(attrs={"rows": 4})
    )
    tags = forms.CharField(required=False, max_length=400, help_text="comma separated, e.g. finance, survey")
    terms_preset = forms.ChoiceField(
        choices=[(name, name.capitalize()) for name in services.TERM_PRESETS], label="Terms"
    )
    terms_text = forms.CharField(
        required=False,
        max_length=services.TERMS_TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Additional terms",
    )
    price_download = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), label="Download price (tokens)", **_TOKEN
    )
    price_compute = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), label="Compute-only price (tokens)", **_TOKEN
    )
    preview_enabled = forms.BooleanField(
        required=False,
        label="Show a preview",
        help_text="Anyone may see the first 10 rows of the version on sale; you can turn it off at any time.",
    )
    privacy_budget = privacy_budget_field(
        required=False,
        initial=Decimal("10"),
        help_text="Compute-only buyers never see rows: their analyses are differentially private, each spending "
        "some of this ε. A smaller budget protects the people in the data more and allows fewer or noisier "
        "analyses; empty: 10.",
    )

    # The two prices side by side, and the file last: after a refused post the browser has forgotten it.
    field_order = [
        "title", "description", "tags", "terms_preset", "terms_text", "price_download", "price_compute",
        "privacy_budget", "preview_enabled", "file",
    ]  # fmt: skip
    PRICES = ("price_download", "price_compute")

    def clean_tags(self) -> list[str]:
        tags = [t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()]
        if len(tags) > services.TAGS_MAX:
            raise forms.ValidationError(f"At most {services.TAGS_MAX} tags.")
        if any(len(t) > services.TAG_MAX for t in tags):
            raise forms.ValidationError(f"A tag is at most {services.TAG_MAX} characters.")
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
        """Keyword arguments for services.dataset_create, less the owner."""
        data = self.cleaned_data
        return {
            "terms_preset": data["terms_preset"],
            "terms_text": data["terms_text"],
            "title": data["title"],
            "description": data["description"],
            "tags": data["tags"],
            "price_download": tokens_to_minor(data["price_download"]),
            "price_compute": tokens_to_minor(data["price_compute"]),
            "preview_enabled": data["preview_enabled"],
            "privacy_budget": data["privacy_budget"],
        }


def terms_preset_descriptions() -> list[tuple[str, str]]:
    """Each terms preset with what it allows, in words, from services.TERM_PRESETS."""
    rows = []
    for name, terms in services.TERM_PRESETS.items():
        days = terms["term_days"]
        rows.append((
            name.capitalize(),
            "; ".join([
                "commercial use allowed" if terms["commercial_use"] else "no commercial use",
                "redistribution allowed" if terms["redistribution"] else "no redistribution",
                "attribution required" if terms["attribution"] else "no attribution needed",
                "models may be trained from it" if terms["derived_models"] else "no models trained from it",
                f"for {days} days from purchase" if days else "perpetual",
            ]),
        ))  # fmt: skip
    return rows


class PurchaseForm(forms.Form):
    tier = forms.ChoiceField(choices=License.Tier.choices)
    # The offer the buyer confirmed (services.license_offer), when the confirmation page sent it.
    price = forms.IntegerField(required=False, min_value=0, max_value=2**53 - 1)
    terms_hash = forms.RegexField(regex=r"^[0-9a-f]{64}$", required=False, empty_value=None)
    privacy_budget = forms.RegexField(regex=r"^[0-9]{1,4}\.[0-9]{2}$", required=False, empty_value=None)


class PreviewForm(forms.Form):
    enabled = forms.BooleanField(required=False)


class PrivacyBudgetForm(forms.Form):
    budget = privacy_budget_field(help_text="for licences sold from now on; those already sold keep theirs")


# Labels and help of the options common to every analysis (each kind's own are in its entry of
# marketplace.analyses.KINDS); an option without either still appears, under its own name and help text.
_CHOICE_LABELS = {"impute": "Impute (mean, or no category)", "drop": "Drop rows with a missing value"}
_OPTION_TEXT: dict[str, tuple[str, str]] = {
    "analysis": ("Analysis", ""),
    "max_categories": (
        "Max categories",
        "a text column with more distinct values than this is left out; others are one-hot encoded",
    ),
    "missing": ("Missing values", "impute: a missing number becomes its column's mean"),
    "epsilon": (
        "Privacy budget to spend (ε)",
        "taken from your licence's budget; more ε, less noise: ε = 1 is a common choice, 0.1 is very noisy",
    ),
}
# What changes in the form for a compute-only licensee, whose analyses are differentially private: options that
# no private analysis reads are left out, and the help says what it refuses.
_PRIVATE_HELP = {
    "max_categories": "the most frequent levels kept, each held by at least 5 rows; the rest are folded into "
    'one "(other)" level, and identifier-like columns are left out',
}


def _private_analysis_help() -> str:
    """ "compute-only access offers k-means, PCA and the isolation forest; DBSCAN has no private version and is
    for owners and download licensees", from the table."""
    exact = [kind.short for kind in analyses.exact_only()]
    if not exact:
        return f"compute-only access offers {analyses.private_offer()}"
    verbs = ("has", "is") if len(exact) == 1 else ("have", "are")
    return (
        f"compute-only access offers {analyses.private_offer()}; {analyses.listed(exact)} {verbs[0]} no private "
        f"version and {verbs[1]} for owners and download licensees"
    )


def analysis_groups() -> list[tuple[str, tuple[str, ...]]]:
    """The form's fieldsets: the kind, ε, each kind's own options under its legend, then the preprocessing."""
    return [(legend, names) for legend, _, names in analysis_fieldsets()]


def analysis_fieldsets() -> list[tuple[str, str, tuple[str, ...]]]:
    """(legend, kind, options) of each fieldset; the kind is an analysis's name for its own options and empty
    for those every analysis reads, so that the page may show only the chosen analysis's fieldset."""
    kinds = [
        (kind.legend or kind.label, kind.name, kind.options)
        for kind in analyses.KINDS.values()
        if kind.options
    ]
    return [("", "", ("analysis",)), ("Differential privacy", "", ("epsilon",)), *kinds,
            ("Preprocessing", "", ("max_categories", "missing"))]  # fmt: skip


class AnalysisForm(forms.Form):
    """The analysis options of marketplace.jobkinds.AnalysisOptions as a page form: its fields are made from
    that serializer, which also validates what is submitted, so the page and the API accept the same; the
    kinds, their labels and the text of their own options come from the table of marketplace.analyses.

    `private` shapes the form shown: None every option (what a post is validated with), False for exact
    results (no ε to spend), True for a compute-only licensee (ε with what is left, without the options that
    no private analysis reads)."""

    def __init__(
        self, *args: Any, private: bool | None = None, epsilon_left: Decimal | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        texts, choice_labels = dict(_OPTION_TEXT), dict(_CHOICE_LABELS)
        private_help = {"analysis": _private_analysis_help(), **_PRIVATE_HELP}
        for kind in analyses.KINDS.values():
            texts.update(kind.texts)
            choice_labels.update({**kind.choice_labels, kind.name: kind.label})
            private_help.update(kind.private_help)
        for name, field in AnalysisOptions().fields.items():
            self.fields[name] = form_field(name, field, texts, choice_labels)
        if private is False:
            del self.fields["epsilon"]
        elif private:
            for name in analyses.private_omitted():
                self.fields.pop(name, None)
            for name, help_text in private_help.items():
                if name in self.fields:
                    self.fields[name].help_text = help_text
            epsilon = self.fields.get("epsilon")
            if epsilon is not None and epsilon_left is not None:
                epsilon.help_text = f"{epsilon.help_text}; ε = {epsilon_left} is left"
                if 0 < epsilon_left < (epsilon.initial or 0):
                    epsilon.initial = epsilon_left

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The fields in fieldsets by the analysis they tune; options in no fieldset come last."""
        return [(legend, fields) for legend, _, fields in self.fieldsets()]

    def fieldsets(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(legend, kind, fields): `groups()` with the analysis each fieldset belongs to ("" for all)."""
        fieldsets = analysis_fieldsets()
        placed = {name for _, _, names in fieldsets for name in names}
        groups = [
            (legend, kind, [self[n] for n in names if n in self.fields]) for legend, kind, names in fieldsets
        ]
        groups.append(("More options", "", [self[n] for n in self.fields if n not in placed]))
        return [(legend, kind, fields) for legend, kind, fields in groups if fields]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        # Empty optional fields are left out so that the serializer's defaults apply.
        data = {name: value for name, value in cleaned.items() if value not in (None, "")}
        options = AnalysisOptions(data=data)
        if not options.is_valid():
            for name, errors in options.errors.items():
                for error in errors:
                    self.add_error(name if name in self.fields else None, str(error))
            return cleaned
        return dict(options.validated_data)
