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
from django.views.decorators.http import require_POST

from ledger.services import format_amount
from marketplace import selectors, services
from marketplace.forms import (
    AnalysisForm,
    DatasetCreateForm,
    DatasetFilterForm,
    PurchaseForm,
    VersionUploadForm,
)
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.errors import DomainError

PAGE_SIZE = 24


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
        "page": page,
        "cards": [_card(dataset) for dataset in page],
        "query": query.urlencode(),
    }
    return render(request, "marketplace/index.html", context)


# ---------------------------------------------------------------------------------------------------- one listing


def _stats_rows(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    columns = (stats or {}).get("columns")
    return columns if isinstance(columns, list) else []


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
    return redirect("jobs:detail", job_id=job.pk)


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
