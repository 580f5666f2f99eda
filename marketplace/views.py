"""The data marketplace's pages: browse, one listing, a new listing, and the user's own listings and purchases."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from ledger.services import format_amount
from marketplace import selectors, services
from marketplace.forms import (
    ANALYSIS_LABELS,
    AnalysisForm,
    DatasetCreateForm,
    DatasetFilterForm,
    PreviewForm,
    PurchaseForm,
    VersionUploadForm,
)
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.errors import DomainError
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_cancel, job_snapshot

PAGE_SIZE = 24
RECENT_ANALYSES = 20


def _price(minor: int | None) -> str:
    return format_amount(minor) if minor is not None else ""


def _card(dataset: Dataset) -> dict[str, Any]:
    """What a listing card shows; reads only the owner and current version already loaded by the selector."""
    stats = (dataset.current_version.stats if dataset.current_version else None) or {}
    return {
        "dataset": dataset,
        "price_download": _price(dataset.price_download),
        "price_compute": _price(dataset.price_compute),
        "rows": stats.get("rows"),
        "n_columns": stats.get("n_columns", len(stats.get("columns") or [])) if stats else None,
    }


def _errors_to_messages(request: HttpRequest, form, suffix: str = "") -> None:
    for field, errors in form.errors.items():
        label = form.fields[field].label or field if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{label}: {error}{suffix}" if label else f"{error}{suffix}")


# ---------------------------------------------------------------------------------------------------- browse


def index(request: HttpRequest) -> HttpResponse:
    form = DatasetFilterForm(request.GET)
    filters: dict[str, Any] = {}
    if form.is_valid():
        filters = form.filters()
    else:
        _errors_to_messages(request, form, " The filter was ignored.")
    page = Paginator(selectors.dataset_list_public(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "filters": filters,
        "searching": any(name != "sort" for name in filters),
        "page": page,
        "cards": [_card(dataset) for dataset in page],
        "query": query.urlencode(),
    }
    return render(request, "marketplace/index.html", context)


# ---------------------------------------------------------------------------------------------------- one listing


def _stats_rows(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The column statistics, numbers written for reading (six significant digits, thousands grouped)."""
    columns = (stats or {}).get("columns")
    if not isinstance(columns, list):
        return []
    measures = ("min", "max", "mean", "std")
    return [
        {**col, **{name: _readable(col.get(name)) for name in measures}}
        if col.get("type") == "numeric"
        else col
        for col in columns
    ]


def detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    is_owner = request.user.is_authenticated and dataset.owner_id == request.user.pk
    # The owner follows the newest upload (processing, failed or ready); everyone else sees what is on sale.
    version = dataset.versions.first() if is_owner else dataset.current_version
    licenses: list[License] = []
    if request.user.is_authenticated and not is_owner:
        licenses = list(selectors.license_list_valid(user=request.user, dataset=dataset))
    held = {license.tier for license in licenses}
    # Anonymous visitors see the prices and a log-in link instead of the buy buttons.
    may_buy = (
        request.user.is_authenticated
        and not is_owner
        and dataset.status == Dataset.Status.PUBLISHED
        and dataset.current_version_id is not None
    )
    publishable = (
        is_owner
        and dataset.status != Dataset.Status.WITHDRAWN
        and version is not None
        and version.status == DatasetVersion.Status.READY
        and not (dataset.status == Dataset.Status.PUBLISHED and version.published_seq is not None)
    )
    published_seq = version.published_seq if version else None
    analyses: list[Job] = []
    if request.user.is_authenticated:
        analyses = list(
            selectors.analysis_list_for_user(user=request.user, dataset=dataset)[:RECENT_ANALYSES]
        )
    context = {
        "dataset": dataset,
        "version": version,
        "is_owner": is_owner,
        "licenses": [{"license": license, "price": format_amount(license.price)} for license in licenses],
        "price_download": _price(dataset.price_download),
        "price_compute": _price(dataset.price_compute),
        "can_buy_download": may_buy
        and dataset.price_download is not None
        and License.Tier.DOWNLOAD not in held,
        "can_buy_compute": may_buy and dataset.price_compute is not None and License.Tier.COMPUTE not in held,
        "can_download": is_owner or License.Tier.DOWNLOAD in held,
        "can_analyse": is_owner or bool(held),
        "can_publish": publishable,
        "columns": _stats_rows(version.stats if version else None),
        "ledger_url": reverse("ledger:entry", args=[published_seq]) if published_seq is not None else "",
        "download_url": reverse("api-data-download", args=[dataset.pk]),
        "analysis_form": AnalysisForm(),
        "upload_form": VersionUploadForm(),
        "term_days": dataset.terms.get("term_days"),
        "preview": selectors.dataset_preview(dataset=dataset, version=version),
        "analyses": [
            {"job": job, "label": ANALYSIS_LABELS.get(job.params.get("analysis"), job.params.get("analysis"))}
            for job in analyses
        ],
    }
    return render(request, "marketplace/detail.html", context)


@login_required
@require_POST
def buy(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    form = PurchaseForm(request.POST)
    if not form.is_valid():
        _errors_to_messages(request, form)
        return redirect("marketplace:detail", dataset_id=dataset.pk)
    try:
        license = services.license_purchase(
            buyer=request.user, dataset=dataset, tier=form.cleaned_data["tier"]
        )
    except DomainError as exc:
        messages.error(request, f"Not bought: {exc.message}.")
    else:
        messages.success(
            request,
            f"You bought {license.get_tier_display().lower()} access for {format_amount(license.price)} "
            f"(ledger entry #{license.entry_seq}).",
        )
    return redirect("marketplace:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def publish(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    try:
        dataset = services.dataset_publish(dataset=dataset, actor=request.user)
    except DomainError as exc:
        messages.error(request, f"Not published: {exc.message}.")
    else:
        messages.success(
            request,
            f"Published version {dataset.current_version.number}; "
            f"its SHA-256 is on the ledger as entry #{dataset.current_version.published_seq}.",
        )
    return redirect("marketplace:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def withdraw(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    try:
        services.dataset_withdraw(dataset=dataset, actor=request.user)
    except DomainError as exc:
        messages.error(request, f"Not withdrawn: {exc.message}.")
    else:
        messages.success(request, "Withdrawn: no new sales; licenses already sold keep working.")
    return redirect("marketplace:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def preview_toggle(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    form = PreviewForm(request.POST)
    form.is_valid()  # a lone checkbox: anything but a true value means off
    try:
        dataset = services.dataset_preview_set(
            dataset=dataset, actor=request.user, enabled=form.cleaned_data.get("enabled", False)
        )
    except DomainError as exc:
        messages.error(request, f"Not changed: {exc.message}.")
    else:
        messages.success(
            request,
            "The preview of the first rows is shown on the listing."
            if dataset.preview_enabled
            else "The preview is hidden: no row is shown on the listing.",
        )
    return redirect("marketplace:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def version_upload(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    form = VersionUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        _errors_to_messages(request, form)
        return redirect("marketplace:detail", dataset_id=dataset.pk)
    try:
        version = services.dataset_version_upload(
            dataset=dataset, actor=request.user, upload=form.cleaned_data["file"]
        )
    except DomainError as exc:
        messages.error(request, f"Not uploaded: {exc.message}.")
    else:
        messages.success(
            request,
            f"Version {version.number} uploaded: statistics are being computed; publish when they are ready.",
        )
    return redirect("marketplace:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def analysis_submit(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    form = AnalysisForm(request.POST)
    if not form.is_valid():
        _errors_to_messages(request, form)
        return redirect("marketplace:detail", dataset_id=dataset.pk)
    try:
        job = services.analysis_submit(user=request.user, dataset=dataset, params=form.cleaned_data)
    except DomainError as exc:
        messages.error(request, f"Not started: {exc.message}.")
        return redirect("marketplace:detail", dataset_id=dataset.pk)
    return redirect("marketplace:analysis-detail", dataset_id=dataset.pk, job_id=job.pk)


# The fieldset of AnalysisForm.GROUPS that holds each analysis's own options.
_OPTIONS_OF = {"kmeans": "k-means", "dbscan": "DBSCAN", "isolation_forest": "Isolation forest"}


def _options_shown(params: dict[str, Any]) -> dict[str, Any]:
    """The options that tuned this kind of analysis: the other algorithms' options are left out."""
    groups = dict(AnalysisForm.GROUPS)
    specific = {name for legend in _OPTIONS_OF.values() for name in groups[legend]}
    own = set(groups.get(_OPTIONS_OF.get(params.get("analysis")), ()))
    return {
        k: v
        for k, v in params.items()
        if k not in ("analysis", "version") and (k in own or k not in specific)
    }


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _readable(value: Any) -> str:
    """A measurement with six significant digits and thousands separators; an em dash when missing."""
    number = _number(value)
    if number is None:
        return "\u2014"
    return f"{number:,.0f}" if abs(number) >= 1e6 else f"{number:,.6g}"


def _percent(value: Any) -> float | None:
    number = _number(value)
    return None if number is None else 100 * number


def _clusters(result: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
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
        shares = cluster.get("category_shares") or {}
        rows.append(
            {
                "cluster": cluster.get("cluster"),
                "size": cluster.get("size"),
                "suppressed": bool(cluster.get("suppressed")),
                "centroid": [_readable(centroid.get(name)) for name in columns],
                "shares": [
                    {
                        "column": column,
                        # Most common first; categories (almost) absent from the cluster are left out.
                        "values": [
                            {"value": value, "percent": _percent(share)}
                            for value, share in sorted(
                                values.items(), key=lambda item: -(_number(item[1]) or 0)
                            )
                            if (_number(share) or 0) >= 0.005
                        ],
                    }
                    for column, values in shares.items()
                    if isinstance(values, dict)
                ],
            }
        )
    return columns, rows


def _analysis_report(job: Job) -> dict[str, Any]:
    """What the results page shows of a succeeded analysis job, read defensively from its result."""
    outcome = job.result if isinstance(job.result, dict) else {}
    result = outcome.get("result") if isinstance(outcome.get("result"), dict) else {}
    plot = outcome.get("plot_svg")
    if not (isinstance(plot, str) and plot.lstrip().startswith("<svg")):
        plot = None
    report: dict[str, Any] = {
        "result": result,
        "input": result.get("input") if isinstance(result.get("input"), dict) else {},
        # Built by ml/unsupervised.py from numbers and escaped labels, never from user markup.
        "plot_svg": mark_safe(plot) if plot else None,  # noqa: S308
        "result_sha256": outcome.get("result_sha256"),
        "entry_seq": outcome.get("entry_seq"),
    }
    kind = outcome.get("analysis") or job.params.get("analysis")
    if kind in ("kmeans", "dbscan"):
        report["cluster_columns"], report["clusters"] = _clusters(result)
        best = result.get("k")
        report["candidates"] = [
            {"k": c.get("k"), "silhouette": _number(c.get("silhouette")), "chosen": c.get("k") == best}
            for c in result.get("candidates") or []
            if isinstance(c, dict)
        ]
    elif kind == "isolation_forest":
        report["share_percent"] = _percent(result.get("share_flagged"))
    elif kind == "pca":
        components = list(result.get("components") or [])
        ratios = list(result.get("explained_variance_ratio") or [])
        cumulative = list(result.get("cumulative") or [])
        report["variance"] = [
            {"component": name, "percent": _percent(ratio), "cumulative": _percent(total)}
            for name, ratio, total in zip(components, ratios, cumulative, strict=False)
        ]
        loadings = [row for row in result.get("loadings") or [] if isinstance(row, list)]
        report["components"] = components[: len(loadings)]
        report["loadings"] = [
            {"feature": feature, "values": [_number(row[i]) if i < len(row) else None for row in loadings]}
            for i, feature in enumerate(result.get("feature_names") or [])
        ]
    return report


@login_required
def analysis_detail(request: HttpRequest, dataset_id: int, job_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    job = selectors.analysis_get_for_user(user=request.user, dataset=dataset, job_id=job_id)
    kind = job.params.get("analysis")
    context = {
        "dataset": dataset,
        "job": job,
        "kind": kind,
        "label": ANALYSIS_LABELS.get(kind, kind),
        "options": _options_shown(job.params),
        "snapshot": None if job.is_finished else job_snapshot(job),
        "report": _analysis_report(job) if job.status == Job.Status.SUCCEEDED else None,
    }
    return render(request, "marketplace/analysis.html", context)


@login_required
@require_POST
def analysis_cancel(request: HttpRequest, dataset_id: int, job_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    job = selectors.analysis_get_for_user(user=request.user, dataset=dataset, job_id=job_id)
    try:
        job_cancel(job=job, actor=request.user)
    except DomainError as exc:
        messages.error(request, f"Not cancelled: {exc.message}.")
    else:
        messages.success(request, "The analysis was cancelled.")
    return redirect("marketplace:analysis-detail", dataset_id=dataset.pk, job_id=job.pk)


# ---------------------------------------------------------------------------------------------------- new listing


@login_required
def new(request: HttpRequest) -> HttpResponse:
    form = DatasetCreateForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            terms = services.terms_build(preset=data["terms_preset"], free_text=data["terms_text"])
            dataset = services.dataset_create(owner=request.user, terms=terms, **form.listing())
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            try:
                services.dataset_version_upload(dataset=dataset, actor=request.user, upload=data["file"])
            except DomainError as exc:
                # The draft exists (only its owner sees it); its page offers the upload again.
                messages.error(
                    request, f"The listing was saved as a draft but the file was refused: {exc.message}."
                )
            else:
                messages.success(
                    request, "Listing created: statistics are being computed; publish when they are ready."
                )
            return redirect("marketplace:detail", dataset_id=dataset.pk)
    return render(request, "marketplace/new.html", {"form": form})


# ---------------------------------------------------------------------------------------------------- mine


@login_required
def mine(request: HttpRequest) -> HttpResponse:
    # Sales per listing in one grouped query; an owner's listings are few, so no pagination.
    datasets = selectors.dataset_list_for_owner(owner=request.user)
    fee_bp = settings.MARKETPLACE_FEE_BP
    listings = [
        {
            "dataset": dataset,
            "sales": dataset.sales,
            "gross": format_amount(dataset.gross or 0),
            "net": format_amount((dataset.gross or 0) * (10_000 - fee_bp) // 10_000),
        }
        for dataset in datasets
    ]
    now = timezone.now()
    purchases = [
        {
            "license": license,
            "price": format_amount(license.price),
            "expired": license.expires_at is not None and license.expires_at < now,
        }
        for license in selectors.license_list_for_user(user=request.user)
    ]
    context = {
        "listings": listings,
        "purchases": purchases,
        "total_sales": sum(dataset.sales for dataset in datasets),
        "total_gross": format_amount(sum(dataset.gross or 0 for dataset in datasets)),
        "fee_percent": fee_bp / 100,
    }
    return render(request, "marketplace/mine.html", context)
