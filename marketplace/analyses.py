"""The analyses offered on a dataset: ONE table of kinds, read by the form, the API, the job and the pages.

Adding a kind is one entry in `KINDS` (and its option fields in `jobkinds.AnalysisOptions`, if it has new
ones; a results template under templates/marketplace/analyses/ if it shows more than its charts).
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Options = Mapping[str, Any]
Progress = Callable[..., None]
# exact(prepared, options, progress) -> result; private(prepared, options, epsilon, progress) -> result. Both
# return aggregates only (JSON: numbers, strings, lists, dicts), never rows.
Exact = Callable[[Any, Options, Progress], dict[str, Any]]
Private = Callable[[Any, Options, float, Progress], dict[str, Any]]


def _no_needs(options: Options) -> str | None:
    return None


def _no_summary(options: Options) -> str:
    return ""


def _no_present(result: dict[str, Any], *, private: bool) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class AnalysisKind:
    name: str  # the `analysis` option's value, stored on each Analysis and in its ledger entry
    label: str  # the form's choice and the results page's heading
    short: str  # its name within a sentence ("k-means", "the isolation forest")
    exact: Exact  # for the owner and download licensees, who hold the rows
    charts: Callable[[dict[str, Any]], list[dict[str, Any]]]  # the result's charts (ml.charts), from its JSON
    legend: str = ""  # the form's fieldset of its own options
    options: tuple[str, ...] = ()  # its own fields of AnalysisOptions (the others are common to every kind)
    # The differentially private version for compute-only licensees (None: not offered to them), the options
    # it reads, and why options would be refused for it (None: accepted).
    private: Private | None = None
    private_options: tuple[str, ...] = ()
    private_needs: Callable[[Options], str | None] = _no_needs
    private_note: str = ""  # what a compute-only licensee is told of those needs, in a few words
    # The form's label and help of each own option; the help that replaces it for a compute-only licensee; the
    # labels of its options' choices.
    texts: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    private_help: Mapping[str, str] = field(default_factory=dict)
    choice_labels: Mapping[str, str] = field(default_factory=dict)
    # What the list of analyses adds after the label (" (k=3)"); what the results page reads of the result,
    # and the template that shows it (parts "privacy", "body", "figures"; None: the charts and common figures).
    summary: Callable[[Options], str] = _no_summary
    present: Callable[..., dict[str, Any]] = _no_present
    template: str | None = None


# ---------------------------------------------------------------------------------------------------- runners
# ml is imported when a job runs, so that the web process that only reads the table does not load scikit-learn.


def _kmeans(prepared, options: Options, progress: Progress) -> dict[str, Any]:
    from ml import unsupervised

    mini_batch = {"lloyd": False, "minibatch": True}.get(options.get("algorithm", "auto"))
    return unsupervised.kmeans(prepared, k=options.get("k"), mini_batch=mini_batch, progress=progress)


def _kmeans_private(prepared, options: Options, epsilon: float, progress: Progress) -> dict[str, Any]:
    from ml import private_analyses

    return private_analyses.kmeans(prepared, k=options["k"], epsilon=epsilon, progress=progress)


def _kmeans_needs(options: Options) -> str | None:
    if not options.get("k"):
        return (
            "choose the number of clusters k: choosing it from the data would spend privacy budget on every "
            "candidate"
        )
    return None


def _dbscan(prepared, options: Options, progress: Progress) -> dict[str, Any]:
    from ml import unsupervised

    return unsupervised.dbscan(
        prepared, eps=options["eps"], min_samples=options["min_samples"], progress=progress
    )


def _pca(prepared, options: Options, progress: Progress) -> dict[str, Any]:
    from ml import unsupervised

    return unsupervised.pca(prepared, progress=progress)


def _pca_private(prepared, options: Options, epsilon: float, progress: Progress) -> dict[str, Any]:
    from ml import private_analyses

    return private_analyses.pca(prepared, epsilon=epsilon, progress=progress)


def _forest(prepared, options: Options, progress: Progress) -> dict[str, Any]:
    from ml import unsupervised

    contamination = options.get("contamination") or "auto"
    return unsupervised.isolation_forest(prepared, contamination=contamination, progress=progress)


def _forest_private(prepared, options: Options, epsilon: float, progress: Progress) -> dict[str, Any]:
    from ml import private_analyses

    contamination = options.get("contamination") or "auto"
    return private_analyses.isolation_forest(
        prepared, contamination=contamination, epsilon=epsilon, progress=progress
    )


def _cluster_charts(result: dict[str, Any]) -> list[dict[str, Any]]:
    from ml import charts

    chosen = charts.choosing_k(result.get("candidates") or [], result.get("k"))
    return charts.clusters(result) + ([chosen] if chosen else [])


def _pca_charts(result: dict[str, Any]) -> list[dict[str, Any]]:
    from ml import charts

    return [c for c in (charts.explained_variance(result),) if c]


def _forest_charts(result: dict[str, Any]) -> list[dict[str, Any]]:
    from ml import charts

    return [c for c in (charts.anomaly_scores(result),) if c]


# ---------------------------------------------------------------------------------------------------- presenters
# Results are read defensively: a page must render whatever an older or failed job left.


def number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def readable(value: Any) -> str:
    """A measurement with six significant digits and thousands separators; an em dash when missing."""
    value = number(value)
    if value is None:
        return "\u2014"
    return f"{value:,.0f}" if abs(value) >= 1e6 else f"{value:,.6g}"


def percent(value: Any) -> float | None:
    value = number(value)
    return None if value is None else 100 * value


def approx(value: Any) -> str | None:
    """A noise scale to two significant digits, thousands grouped, never in exponent form; None when missing."""
    value = number(value)
    if value is None or not math.isfinite(value):
        return None
    if value == 0:
        return "0"
    digits = 1 - math.floor(math.log10(abs(value)))
    return f"{round(value, digits):,.{max(digits, 0)}f}"


def _cluster_rows(result: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The centroid columns and one row per cluster: its size and centroid, or that it is suppressed."""
    clusters = [c for c in result.get("clusters") or [] if isinstance(c, dict)]
    columns: list[str] = []
    for cluster in clusters:
        for name in cluster.get("centroid") or {}:
            if name not in columns:
                columns.append(name)
    rows = []
    for cluster in clusters:
        centroid = cluster.get("centroid") or {}
        # A private centroid's noise, one standard deviation per column in the column's own units.
        sd = cluster.get("centroid_sd") if isinstance(cluster.get("centroid_sd"), dict) else {}
        shares = cluster.get("category_shares") or {}
        share_sd = number(cluster.get("share_sd"))
        rows.append(
            {
                "cluster": cluster.get("cluster"),
                "size": cluster.get("size"),
                "suppressed": bool(cluster.get("suppressed")),
                "centroid": [
                    {"value": readable(centroid.get(name)), "sd": approx(sd.get(name))} for name in columns
                ],
                "share_sd_points": approx(100 * share_sd) if share_sd is not None else None,
                "shares": [
                    {
                        "column": column,
                        # Most common first; categories (almost) absent from the cluster are left out.
                        "values": [
                            {"value": value, "percent": percent(share)}
                            for value, share in sorted(
                                values.items(), key=lambda item: -(number(item[1]) or 0)
                            )
                            if (number(share) or 0) >= 0.005
                        ],
                    }
                    for column, values in shares.items()
                    if isinstance(values, dict)
                ],
            }
        )
    return columns, rows


def _present_clusters(result: dict[str, Any], *, private: bool) -> dict[str, Any]:
    columns, clusters = _cluster_rows(result)
    return {
        "cluster_columns": columns,
        "clusters": clusters,
        # Suppressed clusters span the size, each centroid column (and its noise column) and the categories.
        "suppressed_span": 2 + (2 if private else 1) * len(columns),
    }


def _present_pca(result: dict[str, Any], *, private: bool) -> dict[str, Any]:
    components = list(result.get("components") or [])
    ratios = list(result.get("explained_variance_ratio") or [])
    cumulative = list(result.get("cumulative") or [])
    loadings = [row for row in result.get("loadings") or [] if isinstance(row, list)]
    return {
        "variance": [
            {"component": name, "percent": percent(ratio), "cumulative": percent(total)}
            for name, ratio, total in zip(components, ratios, cumulative, strict=False)
        ],
        "components": components[: len(loadings)],
        "loadings": [
            {"feature": feature, "values": [number(row[i]) if i < len(row) else None for row in loadings]}
            for i, feature in enumerate(result.get("feature_names") or [])
        ],
    }


def _present_forest(result: dict[str, Any], *, private: bool) -> dict[str, Any]:
    return {"share_percent": percent(result.get("share_flagged"))}


# ---------------------------------------------------------------------------------------------------- the table

KINDS: dict[str, AnalysisKind] = {
    kind.name: kind
    for kind in (
        AnalysisKind(
            name="kmeans", label="k-means clusters", short="k-means", legend="k-means", options=("k", "algorithm"),
            exact=_kmeans, private=_kmeans_private, private_options=("k",), private_needs=_kmeans_needs,
            private_note="k-means needs the number of clusters k",
            charts=_cluster_charts, present=_present_clusters, template="marketplace/analyses/kmeans.html",
            summary=lambda options: f" (k={options['k']})" if options.get("k") else "",
            texts={
                "k": ("Clusters (k)", "k-means only; empty: the k with the best silhouette from 2 to 8"),
                "algorithm": ("k-means algorithm", ""),
            },
            private_help={
                "k": "required with compute-only access: choosing k from the data would spend privacy budget on "
                "every candidate",
            },
            choice_labels={"auto": "Automatic", "lloyd": "Lloyd (exact)",
                           "minibatch": "Mini-batches (faster on large data)"},
        ),
        AnalysisKind(
            name="dbscan", label="DBSCAN clusters", short="DBSCAN", legend="DBSCAN", options=("eps", "min_samples"),
            exact=_dbscan, charts=_cluster_charts, present=_present_clusters, template="marketplace/analyses/dbscan.html",
            texts={
                "eps": ("Neighbourhood radius (eps)",
                        "DBSCAN only; in standard deviations, since columns are standardized"),
                "min_samples": ("Min samples", "DBSCAN only; neighbours that make a point a core point"),
            },
        ),
        AnalysisKind(
            name="pca", label="Principal components (PCA)", short="PCA", exact=_pca, private=_pca_private,
            charts=_pca_charts, present=_present_pca, template="marketplace/analyses/pca.html",
        ),
        AnalysisKind(
            name="isolation_forest", label="Outliers (isolation forest)", short="the isolation forest",
            legend="Isolation forest", options=("contamination",), exact=_forest, private=_forest_private,
            private_options=("contamination",), charts=_forest_charts, present=_present_forest,
            template="marketplace/analyses/isolation_forest.html",
            texts={
                "contamination": ("Expected outlier share",
                                  "isolation forest only, 0.001 to 0.5; empty: the automatic threshold"),
            },
            private_help={
                "contamination": "isolation forest only, 0.001 to 0.5; empty: the 5% most isolated rows of the "
                "noisy score histogram",
            },
        ),
    )
}  # fmt: skip


def get(name: Any) -> AnalysisKind | None:
    """The kind named `name`, or None for a name the table does not hold."""
    return KINDS.get(name) if isinstance(name, str) else None


def names() -> list[str]:
    return list(KINDS)


def own_options() -> set[str]:
    """The options that belong to one kind each; the others apply to every kind."""
    return {name for kind in KINDS.values() for name in kind.options}


def private_omitted() -> set[str]:
    """The options that no private run reads: left out of a compute-only licensee's form."""
    return {name for kind in KINDS.values() for name in kind.options if name not in kind.private_options}


def listed(words: list[str]) -> str:
    """ "a, b and c"."""
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


def private_offer() -> str:
    """What a compute-only licence offers, in words: "k-means, PCA and the isolation forest"."""
    return listed([kind.short for kind in KINDS.values() if kind.private is not None])


def exact_only() -> list[AnalysisKind]:
    return [kind for kind in KINDS.values() if kind.private is None]


def private_limits() -> str:
    """What compute-only access refuses, as a sentence: "DBSCAN is not offered, and k-means needs the number of
    clusters k." (empty when it refuses nothing)."""
    exact = [kind.short for kind in exact_only()]
    parts = [f"{listed(exact)} {'is' if len(exact) == 1 else 'are'} not offered"] if exact else []
    parts += [kind.private_note for kind in KINDS.values() if kind.private is not None and kind.private_note]
    return (", and ".join(parts) + ".") if parts else ""
