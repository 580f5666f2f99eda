"""The training page's form: made from the job kind's params serializer (models_market.jobkinds.TrainOptions),
so the page and the API accept the same; the target is chosen among the dataset version's columns."""

import json
from typing import Any

from django import forms

from models_market.jobkinds import ALGORITHM_LABELS, TrainOptions
from platform_site.jobs.forms import form_field

TEXTS = {
    "name": ("Model name", ""),
    "target": ("Target column", "the column the model predicts"),
    "test_size": ("Held-out share", "the share of rows kept aside to measure the model (0.05 to 0.5)"),
    "max_levels": ("Levels per text column", ""),
    "hidden": ("Hidden layers (MLP)", "widths separated by commas, e.g. 64, 32"),
    "options": ("Other options (JSON)", 'e.g. {"C": 0.5} or {"n_estimators": 200, "max_depth": 8}'),
    "royalty_bp": ("Resale royalty (basis points)", "100 = 1% of every resale of the token, to you"),
    "lineage_bp": (
        "Lineage share (basis points)",
        "of every call's payment, to the data's owner; empty: default",
    ),
    "epsilon": ("Privacy budget to spend (ε)", ""),
}
# Fieldsets of the page: (legend, field names).
GROUPS = [
    ("", ("name", "description", "target", "task", "algorithm")),
    ("Neural network (MLP)", ("hidden", "activation", "dropout", "epochs", "lr", "batch_size")),
    ("Evaluation", ("test_size", "seed", "max_levels", "options")),
    ("Money", ("royalty_bp", "lineage_bp")),
    ("Differential privacy", ("epsilon",)),
]


class TrainForm(forms.Form):
    def __init__(self, *args: Any, columns: list[str], private: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in TrainOptions().fields.items():
            self.fields[name] = form_field(name, field, TEXTS, ALGORITHM_LABELS)
        self.fields["target"] = forms.ChoiceField(
            choices=[(c, c) for c in columns], label="Target column", help_text=TEXTS["target"][1]
        )
        self.fields["description"].widget = forms.Textarea(attrs={"rows": 3})
        self.fields["options"].required = False
        if private:
            self.fields["algorithm"].choices = [
                c
                for c in self.fields["algorithm"].choices
                if c[0] not in ("random_forest", "hist_gradient_boosting")
            ]
        else:
            del self.fields["epsilon"]
        self.groups = [(legend, [self[n] for n in names if n in self.fields]) for legend, names in GROUPS]

    def clean_hidden(self) -> list[int] | None:
        text = (self.cleaned_data.get("hidden") or "").strip()
        if not text:
            return None
        try:
            return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
        except ValueError:
            raise forms.ValidationError("widths are whole numbers separated by commas, e.g. 64, 32") from None

    def clean_options(self) -> dict:
        text = (self.cleaned_data.get("options") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError('a JSON object, e.g. {"C": 0.5}') from None
        if not isinstance(value, dict):
            raise forms.ValidationError('a JSON object, e.g. {"C": 0.5}')
        return value

    def params(self) -> dict[str, Any]:
        """The cleaned fields as the service takes them (validated again by the kind's serializer)."""
        data = {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
        if "epsilon" in data:
            data["epsilon"] = str(data["epsilon"])
        serializer = TrainOptions(data=data)
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                self.add_error(field if field in self.fields else None, errors)
            raise forms.ValidationError("invalid")
        return dict(serializer.validated_data)


class GuaranteeForm(forms.Form):
    """A token owner's guarantee (no metric: none) and the price of evaluating the model, typed in tokens."""

    metric = forms.CharField(required=False, max_length=16)
    threshold = forms.FloatField(required=False, error_messages={"invalid": "the threshold must be a number"})
    direction = forms.ChoiceField(required=False, choices=[("", ""), ("min", "at most"), ("max", "at least")])
    price_evaluation = forms.DecimalField(
        required=False, min_value=0, max_digits=14, decimal_places=2,
        error_messages={"invalid": "the price is an amount of tokens"},
    )  # fmt: skip

    def guarantee(self) -> dict[str, Any]:
        """The cleaned fields as `services.guarantee_set` takes them (the price in minor units)."""
        data = self.cleaned_data
        price = data["price_evaluation"]
        return {"metric": data["metric"], "threshold": data["threshold"], "direction": data["direction"] or None,
                "price_evaluation": None if price is None else int(price * 100)}  # fmt: skip
