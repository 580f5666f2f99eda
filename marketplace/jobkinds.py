"""The marketplace's jobs: statistics of an uploaded version, and unsupervised analyses."""

from decimal import Decimal
from typing import Any

from django.urls import reverse
from rest_framework import serializers

from marketplace import analyses
from platform_site.jobs.registry import Presentation, job_kind


def _figure(value: Any) -> str | None:
    """A number as a person reads it (1,234; 0.412), or None for anything that is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:,}" if isinstance(value, int) else f"{value:,.3g}"


def _version_object(version) -> tuple[str, str]:
    url = reverse("marketplace:detail", args=[version.dataset_id])
    return f"{version.dataset.title} · version {version.number}", url


class StatsParams(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)


def stats_failed(*, job, error: str) -> None:
    from marketplace.services import version_stats_failed

    version_stats_failed(version_id=job.params["version"], error=error)


def present_stats(jobs) -> dict[int, Presentation]:
    """The version the statistics are of (one query for every job), its size, and a link to its dataset."""
    from marketplace.models import DatasetVersion

    ids = {job.params.get("version") for job in jobs if isinstance(job.params.get("version"), int)}
    versions = DatasetVersion.objects.filter(pk__in=ids).select_related("dataset").in_bulk()
    shown = {}
    for job in jobs:
        version = versions.get(job.params.get("version"))
        if version is None:
            continue
        name, url = _version_object(version)
        result = job.result if isinstance(job.result, dict) else {}
        figures = (("rows", "Rows"), ("columns", "Columns"))
        lines = [(label, _figure(result.get(key))) for key, label in figures]
        shown[job.pk] = Presentation(
            lines=[(label, value) for label, value in lines if value is not None],
            link=("Open the dataset's page", url),
            object=(name, url),
            params=[("version", str(version.number))],
        )
    return shown


@job_kind(
    "marketplace.stats",
    label="Dataset statistics",
    queue="ml",
    params=StatsParams,
    on_failure=stats_failed,
    present=present_stats,
)
def run_stats(*, job, reporter) -> dict:
    from marketplace.services import version_stats_compute

    return version_stats_compute(version_id=job.params["version"], reporter=reporter, job=job)


class AnalysisOptions(serializers.Serializer):
    """What a user chooses for an analysis (the API's body): the kind, from the table of marketplace.analyses,
    and every kind's options (each kind names its own there; the rest apply to all)."""

    analysis = serializers.ChoiceField(choices=[])  # set from the table each time, see get_fields
    k = serializers.IntegerField(min_value=2, max_value=50, required=False, allow_null=True, default=None,
                                 help_text="k-means clusters; empty: chosen by silhouette")  # fmt: skip
    algorithm = serializers.ChoiceField(
        choices=["auto", "lloyd", "minibatch"], default="auto",
        help_text="k-means: Lloyd's exact algorithm, or mini-batches; auto uses mini-batches above 5,000,000 rows",
    )  # fmt: skip
    eps = serializers.FloatField(min_value=0.001, max_value=100, default=0.5)
    min_samples = serializers.IntegerField(min_value=2, max_value=1000, default=5)
    contamination = serializers.FloatField(
        min_value=0.001, max_value=0.5, required=False, allow_null=True, default=None,
        help_text="isolation forest: the share of rows expected to be outliers; empty: the automatic threshold",
    )  # fmt: skip
    max_categories = serializers.IntegerField(min_value=2, max_value=100, default=20)
    missing = serializers.ChoiceField(choices=["impute", "drop"], default="impute")
    epsilon = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal("0.01"), max_value=Decimal("100"), default=Decimal("1.00"),
        help_text="compute-only licences: the privacy budget this analysis spends (ε); more ε, less noise",
    )  # fmt: skip

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["analysis"].choices = analyses.names()
        return fields


class AnalysisParams(AnalysisOptions):
    """The job's parameters: the options and the version the user may analyse."""

    version = serializers.IntegerField(min_value=1)
    # Set by the service, never by the user: a compute-only licensee's analyses are differentially private,
    # and the ε they spend (a decimal string, as on the ledger) was charged to the licence when submitted.
    private = serializers.BooleanField(default=False)
    epsilon = serializers.RegexField(r"^\d{1,3}\.\d{2}$", allow_null=True, default=None)


# The headline figures of any kind's result, where it has them (a private result may hold fewer).
ANALYSIS_FIGURES = (
    ("k", "Clusters (k)"),
    ("n_clusters", "Clusters"),
    ("noise", "Noise points"),
    ("silhouette", "Silhouette"),
    ("n_components", "Components"),
    ("flagged", "Outliers flagged"),
    ("rows", "Rows"),
)


def present_analysis(jobs) -> dict[int, Presentation]:
    """The analysis's kind, version and headline figures, and a link to its results page (one query in all)."""
    from marketplace.models import Analysis

    records = Analysis.objects.filter(job_id__in=[job.pk for job in jobs]).select_related("version__dataset")
    by_job = {record.job_id: record for record in records}
    shown = {}
    for job in jobs:
        record = by_job.get(job.pk)
        if record is None:
            continue
        kind = analyses.get(record.kind)
        name, dataset_url = _version_object(record.version)
        lines = [("Analysis", kind.label if kind else record.kind)]
        if record.private:
            lines.append(("Privacy", f"differentially private, ε {record.epsilon:.2f} spent"))
        outcome = job.result if isinstance(job.result, dict) else {}
        result = outcome.get("result") if isinstance(outcome.get("result"), dict) else {}
        for key, label in ANALYSIS_FIGURES:
            value = _figure(result.get(key))
            if value is not None:
                lines.append((label, value))
        ratios = result.get("explained_variance_ratio")
        if isinstance(ratios, list) and ratios and _figure(ratios[0]) is not None:
            lines.append(("Variance explained by PC1", f"{ratios[0]:.1%}"))
        if record.entry_seq is not None:
            lines.append(("Ledger entry", f"#{record.entry_seq}"))
        # The options that tuned this kind (not the other kinds' own options), and the version by its number.
        own = set((kind.private_options if record.private else kind.options) if kind else ())
        others = analyses.own_options()
        params = [("version", str(record.version.number))] + [
            (key, "—" if value is None else str(value))
            for key, value in record.options.items()
            if key in own or key not in others
        ]
        results_url = reverse("marketplace:analysis-detail", args=[record.version.dataset_id, job.pk])
        shown[job.pk] = Presentation(
            lines=lines, link=("See the results", results_url), object=(name, dataset_url), params=params
        )
    return shown


@job_kind(
    "marketplace.analysis",
    label="Unsupervised analysis",
    queue="ml",
    params=AnalysisParams,
    present=present_analysis,
)
def run_analysis(*, job, reporter) -> dict:
    from marketplace.services import analysis_run

    return analysis_run(job=job, reporter=reporter)
