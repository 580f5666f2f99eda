"""The models market's jobs: training a model on a dataset version, and validating an uploaded model file."""

from decimal import Decimal

from django.urls import reverse
from rest_framework import serializers

from platform_site.jobs.registry import Presentation, job_kind

TRAIN_KIND = "models_market.train"
VALIDATE_KIND = "models_market.validate"
# The names of ml.supervised.ALGORITHMS and ml.architecture.ACTIVATIONS, here so that registering the kinds
# (in every web process) imports no torch; a test checks they match.
ALGORITHMS = ("logistic_regression", "linear_regression", "random_forest", "hist_gradient_boosting", "mlp")
ACTIVATIONS = ("elu", "gelu", "leaky_relu", "relu", "sigmoid", "silu", "tanh")
ALGORITHM_LABELS = {
    "logistic_regression": "Logistic regression",
    "linear_regression": "Linear regression",
    "random_forest": "Random forest",
    "hist_gradient_boosting": "Histogram gradient boosting",
    "mlp": "MLP (neural network)",
}


class TrainOptions(serializers.Serializer):
    """What a trainer chooses (the API's body, and the form's fields): the model's name, the target and task,
    the algorithm and its options, the held-out split, the royalty, and for a compute-only licence the ε."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5_000, required=False, allow_blank=True, default="")
    target = serializers.CharField(max_length=200, help_text="the column to predict")
    task = serializers.ChoiceField(
        choices=[("classification", "Classification"), ("regression", "Regression")]
    )
    algorithm = serializers.ChoiceField(
        choices=ALGORITHMS,
        help_text="logistic regression does classification, linear regression regression; the others both. "
        "Trees are for the data's owner and download licensees only",
    )
    test_size = serializers.FloatField(
        min_value=0.05,
        max_value=0.5,
        default=0.2,
        help_text="the share of rows held out to measure the model",
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    max_levels = serializers.IntegerField(
        min_value=1,
        max_value=50,
        default=20,
        help_text="text columns: the most frequent levels one-hot encoded",
    )
    # The MLP's architecture (an ml.architecture spec) and the training loop (the MLP's, or DP-SGD's).
    hidden = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=4_096), max_length=8, required=False,
        help_text="MLP: the hidden layers' widths, e.g. [64, 32]",
    )  # fmt: skip
    activation = serializers.ChoiceField(choices=ACTIVATIONS, required=False, help_text="MLP: the activation")
    dropout = serializers.FloatField(min_value=0.0, max_value=0.9, required=False, help_text="MLP: dropout")
    epochs = serializers.IntegerField(min_value=1, max_value=1_000, required=False)
    lr = serializers.FloatField(min_value=1e-6, max_value=1.0, required=False, help_text="learning rate")
    batch_size = serializers.IntegerField(min_value=1, max_value=65_536, required=False)
    options = serializers.DictField(
        required=False, default=dict,
        help_text="the algorithm's other options, e.g. {\"C\": 0.5}, {\"n_estimators\": 200, \"max_depth\": 8}",
    )  # fmt: skip
    royalty_bp = serializers.IntegerField(
        min_value=0, max_value=10_000, default=0,
        help_text="your royalty on every resale of the model's token, in basis points (100 = 1%)",
    )  # fmt: skip
    lineage_bp = serializers.IntegerField(
        min_value=0, max_value=10_000, required=False, allow_null=True, default=None,
        help_text="the share of every per-call payment that goes to the training data's owner; empty: the "
        "platform's default",
    )  # fmt: skip
    epsilon = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal("0.01"), max_value=Decimal("100"),
        default=Decimal("1.00"),
        help_text="compute-only licences: the privacy budget this training spends (ε); more ε, a better model",
    )  # fmt: skip

    def validate_options(self, options: dict) -> dict:
        own = sorted(set(options) & {"hidden", "activation", "dropout", "epochs", "lr", "batch_size", "seed"})
        if own:
            raise serializers.ValidationError(f"give {', '.join(own)} as fields of their own, not in options")
        if len(options) > 20 or not all(
            (isinstance(v, int | float) and not isinstance(v, bool)) or v is None for v in options.values()
        ):
            raise serializers.ValidationError("options are at most 20 names, each with a number (or null)")
        return options


class TrainParams(TrainOptions):
    """The job's parameters: the options and the dataset version, with what the service decided."""

    dataset_version = serializers.IntegerField(min_value=1)
    # Set by the service, never by the user: a compute-only licensee's training is differentially private,
    # its ε (a decimal string, as on the ledger) charged to `license` when it was submitted.
    private = serializers.BooleanField(default=False)
    epsilon = serializers.RegexField(r"^\d{1,3}\.\d{2}$", allow_null=True, default=None)
    license = serializers.IntegerField(min_value=1, allow_null=True, default=None)
    lineage_bp = serializers.IntegerField(min_value=0, max_value=10_000)


def _card_url(version) -> str:
    return reverse("api-models-version", args=[version.pk])


def present_train(jobs) -> dict[int, Presentation]:
    """The model trained, from which data, with which algorithm, and its headline figures (one query)."""
    from models_market.models import ModelVersion

    versions = {
        v.job_id: v
        for v in ModelVersion.objects.filter(job_id__in=[job.pk for job in jobs]).select_related("asset")
    }
    shown = {}
    for job in jobs:
        p = job.params if isinstance(job.params, dict) else {}
        lines = [
            ("Algorithm", ALGORITHM_LABELS.get(p.get("algorithm"), str(p.get("algorithm")))),
            ("Predicts", f"{p.get('target')} ({p.get('task')})"),
        ]
        if p.get("private"):
            lines.append(("Privacy", f"differentially private, ε {p.get('epsilon')} spent"))
        result = job.result if isinstance(job.result, dict) else {}
        for name, value in (result.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                lines.append((name.replace("_", " "), f"{value:.3g}"))
        if result.get("token"):
            lines.append(("Token", f"#{result['token']}"))
        if result.get("entry_seq") is not None:
            lines.append(("Ledger entry", f"#{result['entry_seq']}"))
        version = versions.get(job.pk)
        shown[job.pk] = Presentation(
            lines=lines,
            object=(f"{version.asset.name} v{version.number}", _card_url(version)) if version else None,
            params=[(k, str(v)) for k, v in p.items() if k not in ("description",)],
        )
    return shown


@job_kind(TRAIN_KIND, label="Model training", queue="ml", params=TrainParams, present=present_train)
def run_train(*, job, reporter) -> dict:
    from models_market.services.training import model_train_run

    return model_train_run(job=job, reporter=reporter)


class ValidateParams(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    royalty_bp = serializers.IntegerField(min_value=0, max_value=10_000, default=0)


def validate_failed(*, job, error: str) -> None:
    from models_market.services.uploads import model_upload_failed

    model_upload_failed(version_id=job.params["version"], error=error)


def present_validate(jobs) -> dict[int, Presentation]:
    """The uploaded version and what validation found (one query)."""
    from models_market.models import ModelVersion

    ids = {job.params.get("version") for job in jobs if isinstance(job.params.get("version"), int)}
    versions = ModelVersion.objects.filter(pk__in=ids).select_related("asset").in_bulk()
    shown = {}
    for job in jobs:
        version = versions.get(job.params.get("version"))
        if version is None:
            continue
        lines = [("Format", version.get_format_display() or "—"), ("Status", version.status)]
        result = job.result if isinstance(job.result, dict) else {}
        if result.get("token"):
            lines.append(("Token", f"#{result['token']}"))
        shown[job.pk] = Presentation(
            lines=lines,
            object=(f"{version.asset.name} v{version.number}", _card_url(version)),
            params=[("version", str(version.pk))],
        )
    return shown


@job_kind(
    VALIDATE_KIND,
    label="Model upload validation",
    queue="ml",
    params=ValidateParams,
    on_failure=validate_failed,
    present=present_validate,
)
def run_validate(*, job, reporter) -> dict:
    from models_market.services.uploads import model_validate_run

    return model_validate_run(job=job, reporter=reporter)


GUARANTEE_KIND = "models_market.evaluate"
SELECT_KIND = "models_market.select"


class GuaranteeParams(serializers.Serializer):
    purchase = serializers.IntegerField(min_value=1)


def guarantee_failed(*, job, error: str) -> None:
    from models_market.services.guarantees import guarantee_failed as failed

    failed(job=job, error=error)


def _number(value) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def present_guarantee(jobs) -> dict[int, Presentation]:
    """The model bought under its guarantee, the standard, what was measured and the outcome (one query)."""
    from models_market.models import GuaranteedPurchase

    ids = {job.params.get("purchase") for job in jobs if isinstance(job.params, dict)}
    purchases = GuaranteedPurchase.objects.filter(pk__in=[i for i in ids if isinstance(i, int)]).select_related(
        "version__asset"
    ).in_bulk()  # fmt: skip
    shown = {}
    for job in jobs:
        purchase = purchases.get(job.params.get("purchase") if isinstance(job.params, dict) else None)
        if purchase is None:
            continue
        bound = "at least" if purchase.direction == "min" else "at most"
        lines = [
            ("Licence", purchase.get_kind_display()),
            ("Standard", f"{purchase.metric} {bound} {_number(purchase.threshold)}"),
        ]
        if purchase.measured is not None:
            lines.append(("Measured", _number(purchase.measured)))
        outcome = {"met": "met: paid to the seller, licence granted", "missed": "missed: refunded"}
        lines.append(("Outcome", outcome.get(purchase.outcome) or f"{purchase.status} (refunded)"
                      if purchase.status != "pending" else "pending"))  # fmt: skip
        if purchase.result_seq is not None:
            lines.append(("Ledger entry", f"#{purchase.result_seq}"))
        version = purchase.version
        name = f"{version.asset.name} v{version.number}"
        shown[job.pk] = Presentation(
            lines=lines,
            object=(name, reverse("models_market:detail", args=[version.pk])),
            link=("The model's page", reverse("models_market:detail", args=[version.pk])),
            params=[("purchase", str(purchase.pk)), ("model", name)],
        )
    return shown


@job_kind(
    GUARANTEE_KIND, label="Guaranteed licence evaluation", queue="ml", params=GuaranteeParams,
    on_failure=guarantee_failed, present=present_guarantee,
)  # fmt: skip
def run_guarantee(*, job, reporter) -> dict:
    from models_market.services.guarantees import guarantee_evaluate_run

    return guarantee_evaluate_run(job=job, reporter=reporter)


class SelectParams(serializers.Serializer):
    evaluation = serializers.IntegerField(min_value=1)


def select_failed(*, job, error: str) -> None:
    from models_market.services.evaluations import evaluation_failed

    evaluation_failed(job=job, error=error)


def present_select(jobs) -> dict[int, Presentation]:
    """The evaluation's metric, how many models it ranked of how many, and what was refunded (one query)."""
    from ledger.services import format_amount
    from models_market.models import Evaluation

    ids = {job.params.get("evaluation") for job in jobs if isinstance(job.params, dict)}
    evaluations = Evaluation.objects.filter(pk__in=[i for i in ids if isinstance(i, int)]).in_bulk()
    shown = {}
    for job in jobs:
        ev = evaluations.get(job.params.get("evaluation") if isinstance(job.params, dict) else None)
        if ev is None:
            continue
        lines = [("Metric", ev.metric), ("Paid", format_amount(ev.total))]
        result = job.result if isinstance(job.result, dict) else {}
        ranking = result.get("ranking") if isinstance(result.get("ranking"), list) else None
        if ranking is not None:
            ranked = sum(1 for r in ranking if isinstance(r, dict) and r.get("rank") is not None)
            lines.append(("Ranked", f"{ranked} of {len(ranking)} models"))
            if result.get("refunded"):
                lines.append(
                    ("Refunded", format_amount(result["refunded"]) + " (models the holdout did not fit)")
                )
        elif ev.status in ("failed", "expired"):
            lines.append(("Outcome", f"{ev.status}: {format_amount(ev.total)} refunded"))
        if ev.result_seq is not None:
            lines.append(("Ledger entry", f"#{ev.result_seq}"))
        url = reverse("api-models-evaluation", args=[ev.pk])
        shown[job.pk] = Presentation(
            lines=lines,
            link=("The ranking (API)", url),
            object=(f"evaluation #{ev.pk}", url),
            params=[("evaluation", str(ev.pk)), ("metric", ev.metric)],
        )
    return shown


@job_kind(
    SELECT_KIND, label="Model evaluation", queue="ml", params=SelectParams, on_failure=select_failed,
    present=present_select,
)  # fmt: skip
def run_select(*, job, reporter) -> dict:
    from models_market.services.evaluations import evaluation_run

    return evaluation_run(job=job, reporter=reporter)
