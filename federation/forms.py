"""The coordinator's creation form and a party's join form: fields in words, turned into the service's arguments."""

import json
from decimal import Decimal
from typing import Any

from django import forms

from federation.models import STRATEGY_LABELS
from federation.services.common import STRATEGY_NAMES

ACTIVATIONS = ("relu", "gelu", "elu", "leaky_relu", "silu", "sigmoid", "tanh")


class FederationForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(max_length=5_000, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    target = forms.CharField(
        max_length=200,
        required=False,
        help_text="The column to predict: the schema is then fitted on your rows",
    )
    task = forms.ChoiceField(
        choices=[("classification", "Classification"), ("regression", "Regression")], required=False
    )
    schema = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text='Or the feature schema itself (JSON): {"columns": [{"name", "type": "numeric", "impute", "center", '
        '"scale"} or {"name", "type": "categorical", "levels"}], "target": {"name", "task", "classes"}}',
    )
    validation = forms.FileField(
        help_text="Your validation rows (CSV with every column and the target); kept private"
    )
    hidden = forms.CharField(initial="64", help_text="The MLP's hidden layer widths, e.g. 64, 32")
    activation = forms.ChoiceField(choices=[(a, a) for a in ACTIVATIONS], initial="relu")
    dropout = forms.FloatField(min_value=0, max_value=0.9, initial=0.0)
    optimizer = forms.ChoiceField(choices=[("sgd", "SGD"), ("adam", "Adam")])
    lr = forms.FloatField(min_value=1e-6, max_value=10, initial=0.05, label="Learning rate")
    batch_size = forms.IntegerField(min_value=1, max_value=65_536, initial=32)
    local_epochs = forms.IntegerField(min_value=1, max_value=100, initial=1)
    proximal_mu = forms.FloatField(min_value=0, max_value=1_000, initial=0.0, label="FedProx μ")
    strategy = forms.ChoiceField(choices=[(s, STRATEGY_LABELS[s]) for s in STRATEGY_NAMES])
    options = forms.CharField(
        required=False, initial="{}", help_text='The strategy\'s options (JSON), e.g. {"trim_beta": 0.2}'
    )
    secure_aggregation = forms.BooleanField(
        required=False, help_text="Masked updates, summed only: FedAvg, FedProx and FedAdam only"
    )
    clip_norm = forms.FloatField(
        required=False, min_value=0, help_text="Differential privacy: empty for none"
    )
    noise_multiplier = forms.FloatField(required=False, min_value=0)
    delta = forms.FloatField(required=False, min_value=0, max_value=0.001)
    update_norm_bound = forms.FloatField(
        min_value=0, initial=100.0, help_text="The largest L2 norm an update may have"
    )
    rounds = forms.IntegerField(min_value=1, max_value=1_000, initial=20)
    min_parties = forms.IntegerField(min_value=1, max_value=1_000, initial=2)
    round_deadline = forms.IntegerField(
        min_value=1, max_value=43_200, initial=60, label="Round deadline (minutes)"
    )
    target_metric = forms.ChoiceField(
        choices=[(m, m) for m in ("accuracy", "loss", "rmse", "mae", "r2")], initial="accuracy"
    )
    target_value = forms.FloatField(required=False)
    reward_pool = forms.DecimalField(
        min_value=Decimal(0),
        max_digits=18,
        decimal_places=2,
        initial=Decimal(0),
        help_text="Tokens, escrowed now",
    )

    def clean_schema(self) -> Any:
        if not self.cleaned_data["schema"].strip():
            return None
        try:
            return json.loads(self.cleaned_data["schema"])
        except ValueError:
            raise forms.ValidationError("the schema is not valid JSON") from None

    def clean(self) -> dict:
        data = super().clean()
        if data.get("schema") is None and not (data.get("target") or "").strip() and not self.errors:
            raise forms.ValidationError("name the column to predict, or give the feature schema")
        return data

    def clean_options(self) -> Any:
        try:
            return json.loads(self.cleaned_data["options"] or "{}")
        except ValueError:
            raise forms.ValidationError("the options are not valid JSON") from None

    def clean_hidden(self) -> list[int]:
        parts = [p.strip() for p in self.cleaned_data["hidden"].split(",") if p.strip()]
        if not all(p.isascii() and p.isdigit() and len(p) < 6 for p in parts):
            raise forms.ValidationError("widths are whole numbers separated by commas")
        return [int(p) for p in parts]

    def arguments(self) -> dict[str, Any]:
        """The service's keyword arguments from the cleaned fields."""
        d = self.cleaned_data
        privacy = None
        if d.get("clip_norm") is not None or d.get("noise_multiplier") is not None:
            privacy = {"clip_norm": d.get("clip_norm"), "noise_multiplier": d.get("noise_multiplier")}
            if d.get("delta") is not None:
                privacy["delta"] = d["delta"]
        return {
            "name": d["name"], "description": d.get("description") or "", "schema": d["schema"],
            "spec": {"hidden": d["hidden"], "activation": d["activation"], "dropout": d["dropout"]},
            "recipe": {"optimizer": d["optimizer"], "lr": d["lr"], "batch_size": d["batch_size"],
                       "local_epochs": d["local_epochs"], "proximal_mu": d["proximal_mu"]},
            "strategy": d["strategy"], "options": d["options"], "privacy": privacy,
            "secure_aggregation": d["secure_aggregation"], "update_norm_bound": d["update_norm_bound"],
            "rounds": d["rounds"], "min_parties": d["min_parties"], "round_deadline": d["round_deadline"] * 60,
            "target_metric": d["target_metric"], "target_value": d.get("target_value"),
            "reward_pool": int(d["reward_pool"] * 100), "validation": d["validation"],
        }  # fmt: skip


class JoinForm(forms.Form):
    key_id = forms.ChoiceField(
        label="Sign with", help_text="the party is this key's owner: you or your organization"
    )

    def __init__(self, *args: Any, keys: list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key_id"].choices = [
            (k.key_id, f"{k.name} ({k.key_id}) — {k.organization.name if k.organization_id else 'you'}")
            for k in keys
        ]
