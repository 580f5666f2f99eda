"""The marketplace's jobs: statistics of an uploaded version, and unsupervised analyses."""

from decimal import Decimal

from rest_framework import serializers

from marketplace import analyses
from platform_site.jobs.registry import job_kind


class StatsParams(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)


def stats_failed(*, job, error: str) -> None:
    from marketplace.services import version_stats_failed

    version_stats_failed(version_id=job.params["version"], error=error)


@job_kind(
    "marketplace.stats", label="Dataset statistics", queue="ml", params=StatsParams, on_failure=stats_failed
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


@job_kind("marketplace.analysis", label="Unsupervised analysis", queue="ml", params=AnalysisParams)
def run_analysis(*, job, reporter) -> dict:
    from marketplace.services import analysis_run

    return analysis_run(job=job, reporter=reporter)
