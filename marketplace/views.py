"""The data marketplace's pages: browse, one listing, a new listing, and the user's own listings and purchases."""

import hashlib
import math
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.services import InsufficientFunds, format_amount
from marketplace import analyses, selectors, services
from marketplace.analyses import approx as _approx
from marketplace.analyses import number as _number
from marketplace.analyses import readable as _readable
from marketplace.forms import (
    AnalysisForm,
    DatasetCreateForm,
    DatasetFilterForm,
    PreviewForm,
    PrivacyBudgetForm,
    PurchaseForm,
    VersionUploadForm,
    terms_preset_descriptions,
)
from marketplace.models import Analysis, Dataset, License
from ml import charts
from platform_site.errors import DomainError, NotFound, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_cancel, job_snapshot

PAGE_SIZE = 24
RECENT_ANALYSES = 20


def _price(minor: int | None) -> str:
    return format_amount(minor) if minor is not None else ""


def _card(dataset: Dataset) -> dict[str, Any]:
    """What a listing card shows; reads only what `selectors.dataset_page_public` loaded."""
    return {
        "dataset": dataset,
        "price_download": _price(dataset.price_download),
        "price_compute": _price(dataset.price_compute),
        "rows": dataset.card_rows,
        "columns": dataset.card_columns,
    }


def _errors_to_messages(request: HttpRequest, form, suffix: str = "") -> None:
    for field, errors in form.errors.items():
        label = form.fields[field].label or field if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{label}: {error}{suffix}" if label else f"{error}{suffix}")


# ---------------------------------------------------------------------------------------------------- browse


def _canonical_query(request: HttpRequest, form: DatasetFilterForm) -> tuple[str, bool]:
    """The filters' query string as the pager writes it (the form's non-empty fields, sorted), and whether the
    request's own says nothing more: no other parameter, none twice, no padded value, a page number as written.
    Only such requests keep their rendering in the cache, so junk parameters cannot multiply its entries."""
    items = [(name, value) for name in request.GET for value in request.GET.getlist(name)]
    query = urlencode(sorted((n, v) for n, v in items if n in form.fields and v))
    page = request.GET.get("page", "1")
    canonical = (
        len(items) == len(request.GET)
        and all(name in form.fields or name == "page" for name, _ in items)
        and all(value == value.strip() for _, value in items)
        and page.isascii()  # int() reads other digits (²), which str() writes otherwise
        and page.isdigit()
        and len(page) <= 18
        and str(int(page)) == page
    )
    return query, canonical


def index(request: HttpRequest) -> HttpResponse:
    form = DatasetFilterForm(request.GET)
    filters: dict[str, Any] = {}
    if form.is_valid():
        filters = form.filters()
    else:
        _errors_to_messages(request, form, " The filter was ignored.")
    query, canonical = _canonical_query(request, form)
    key = selectors.dataset_browse_key(filters=filters, per_page=PAGE_SIZE)
    rendered = f"{key}:{request.GET.get('page', '1')}:" + hashlib.sha256(query.encode()).hexdigest()
    # A visitor with neither session nor messages sees what every such visitor sees: the whole page is kept.
    visitor = (
        canonical
        and form.is_valid()
        and not (request.COOKIES.keys() & {settings.SESSION_COOKIE_NAME, "messages"})
    )
    if visitor and (cached := cache.get(f"{rendered}:page")) is not None:
        return HttpResponse(cached)
    page = selectors.dataset_page_public(
        number=request.GET.get("page"), per_page=PAGE_SIZE, key=key, **filters
    )
    # A page number beyond the last shows the last page: kept under its own number only.
    canonical = canonical and str(page.number) == request.GET.get("page", "1")
    listings = {
        "searching": any(name != "sort" for name in filters),
        "page": page,
        "cards": [_card(dataset) for dataset in page],
        "query": query,
    }
    # The cards, count and pager, rendered once per page and filters: most of the page's work.
    html = cache.get(f"{rendered}:listings") if canonical else None
    if html is None:
        html = render_to_string("marketplace/_listings.html", listings)
        if canonical:
            cache.set(f"{rendered}:listings", html, selectors.BROWSE_CACHE_SECONDS)
    # Our own template's output, escaped as it was rendered.
    context = {**listings, "form": form, "filters": filters, "listings_html": mark_safe(html)}  # noqa: S308
    response = render(request, "marketplace/index.html", context)
    if visitor and canonical:
        cache.set(f"{rendered}:page", response.content, selectors.BROWSE_CACHE_SECONDS)
    return response


# ---------------------------------------------------------------------------------------------------- one listing


TOP_VALUES_SHOWN = 3


def _stat(value: Any) -> str:
    """A statistic in the table's one format: four significant digits (whole numbers from 10,000), thousands
    grouped, no exponent and no trailing zeros; an em dash when missing."""
    number = _number(value)
    if number is None or not math.isfinite(number):
        return "\u2014"
    if number == 0:
        return "0"
    if abs(number) >= 1e4:
        return f"{number:,.0f}"
    decimals = 3 - math.floor(math.log10(abs(number)))
    if decimals > 8:  # below 10⁻⁵ the digits would be mostly zeros
        return f"{number:.3g}"
    text = f"{round(number, decimals):,.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _stats_rows(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The column statistics as the table shows them: numbers in one format, a text column's few most frequent
    values on one line and how many more there are."""
    columns = (stats or {}).get("columns")
    if not isinstance(columns, list):
        return []
    rows = []
    for col in columns:
        if not isinstance(col, dict):
            continue
        if col.get("type") == "numeric":
            rows.append({**col, **{name: _stat(col.get(name)) for name in ("min", "max", "mean", "std")}})
            continue
        top = [t for t in col.get("top") or [] if isinstance(t, dict)]
        rows.append({
            **col,
            "top": top[:TOP_VALUES_SHOWN],
            "more": max(len(top) - TOP_VALUES_SHOWN, 0),
        })  # fmt: skip
    return rows


def _distributions(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The numeric columns' histograms as one chart of small multiples (None before statistics exist)."""
    columns = (stats or {}).get("columns")
    if not isinstance(columns, list):
        return None
    return charts.distributions([c for c in columns if isinstance(c, dict)], min_count=stats.get("min_count"))


def detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    is_owner = selectors.dataset_is_owner(user=request.user, dataset=dataset)
    # The owner follows the newest upload (processing, failed or ready); everyone else sees what is on sale. Read
    # before the actions: a version that turns ready between the two reads is then shown ready with its Publish
    # button, never ready without it (which would also stop the draft page's polling).
    version = dataset.versions.first() if is_owner else dataset.current_version
    actions = selectors.dataset_actions(user=request.user, dataset=dataset)
    licenses = list(actions.licenses)
    # A compute-only licensee's analyses are differentially private and spend the licence's ε; the owner and
    # download licensees hold the rows, so theirs are exact and spend nothing.
    compute_license = actions.compute_license
    private = actions.analyse_private
    budget_licenses: list[License] = []
    if is_owner:
        budget_licenses = list(selectors.privacy_budget_licenses(user=request.user, dataset=dataset))
    published_seq = version.published_seq if version else None
    recent: list[Job] = []
    if request.user.is_authenticated:
        recent = list(selectors.analysis_list_for_user(user=request.user, dataset=dataset)[:RECENT_ANALYSES])
    context = {
        "dataset": dataset,
        "version": version,
        "is_owner": is_owner,
        "licenses": [{"license": license, "price": format_amount(license.price)} for license in licenses],
        "price_download": _price(dataset.price_download),
        "price_compute": _price(dataset.price_compute),
        "actions": actions,
        # Anonymous visitors see the prices and a log-in link instead of the buy buttons.
        "can_buy_download": actions.buy_download,
        "can_buy_compute": actions.buy_compute,
        "can_download": actions.download,
        "can_analyse": actions.analyse,
        "can_publish": actions.publish,
        "columns": _stats_rows(version.stats if version else None),
        "distributions": _distributions(version.stats if version else None),
        "ledger_url": reverse("ledger:entry", args=[published_seq]) if published_seq is not None else "",
        "download_url": reverse("api-data-download", args=[dataset.pk]),
        "analysis_form": AnalysisForm(
            private=private, epsilon_left=compute_license.epsilon_left if private else None
        ),
        "privacy_budget": dataset.privacy_budget,
        "compute_license": compute_license,
        "private": private,
        "budget_licenses": budget_licenses,
        "budget_form": PrivacyBudgetForm(initial={"budget": dataset.privacy_budget}) if is_owner else None,
        "upload_form": VersionUploadForm(),
        "term_days": dataset.terms.get("term_days"),
        "preview": selectors.dataset_preview(dataset=dataset, version=version),
        "private_limits": analyses.private_limits() if private else "",
        "analyses": [_analysis_row(job) for job in recent],
    }
    return render(request, "marketplace/detail.html", context)


def _quote(request: HttpRequest, dataset: Dataset, tier: str) -> dict[str, Any]:
    """What the confirmation shows: the tier's price, the buyer's balance (read from the ledger) and after."""
    price = dataset.price_download if tier == License.Tier.DOWNLOAD else dataset.price_compute
    balance = ledger_selectors.account_balance(name=ledger_services.account_name(user=request.user))
    return {
        "tier": tier,
        "tier_label": License.Tier(tier).label,
        "price": _price(price),
        "balance": format_amount(balance),
        "after": format_amount(balance - (price or 0)),
        "affordable": price is not None and balance >= price,
    }


def _short_of_funds(quote: dict[str, Any]) -> str:
    return f"You have {quote['balance']}; this costs {quote['price']}."


@login_required
def buy(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """GET: the confirmation (tier, price, terms, balance and balance after); POST: the purchase."""
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    form = PurchaseForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        _errors_to_messages(request, form)
        return redirect("marketplace:detail", dataset_id=dataset.pk)
    tier = form.cleaned_data["tier"]
    actions = selectors.dataset_actions(user=request.user, dataset=dataset)
    if request.method == "GET":
        if not (actions.buy_download if tier == License.Tier.DOWNLOAD else actions.buy_compute):
            messages.error(
                request,
                "You own this dataset." if actions.is_owner else "This access is not on sale to you.",
            )
            return redirect("marketplace:detail", dataset_id=dataset.pk)
        context = {
            "dataset": dataset,
            "quote": _quote(request, dataset, tier),
            "term_days": dataset.terms.get("term_days"),
            "privacy_budget": dataset.privacy_budget,
            "offer": services.license_offer(dataset=dataset, tier=tier),
        }
        return render(request, "marketplace/buy.html", context)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        # The offer the confirmation showed: another (the owner changed it since) is refused.
        agreed = {
            name: value for name, value in form.cleaned_data.items() if name != "tier" and value is not None
        }
        license = services.license_purchase(buyer=request.user, dataset=dataset, tier=tier, expected=agreed)
    except InsufficientFunds:
        # Back to the confirmation, which says the balance and the price with the faucet and the wallet at hand.
        messages.error(request, f"Not bought: {_short_of_funds(_quote(request, dataset, tier))}")
        return redirect(f"{reverse('marketplace:buy', args=[dataset.pk])}?tier={tier}")
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
def version_state(request: HttpRequest, dataset_id: int) -> JsonResponse:
    """The owner's newest version as the draft page polls it: processing, ready or failed, and whether the
    listing may be published now."""
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    actions = selectors.dataset_actions(user=request.user, dataset=dataset)
    if not actions.is_owner:
        raise NotFound("no such dataset")
    version = dataset.versions.first()
    if version is None:
        return JsonResponse({"version": None, "status": None, "error": "", "can_publish": False})
    return JsonResponse(
        {
            "version": version.number,
            "status": version.status,
            "error": version.error if version.status == "failed" else "",
            "can_publish": actions.publish,
        }
    )


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
def privacy_budget_set(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    form = PrivacyBudgetForm(request.POST)
    if not form.is_valid():
        _errors_to_messages(request, form)
        return redirect("marketplace:detail", dataset_id=dataset.pk)
    try:
        dataset = services.dataset_privacy_budget_set(
            dataset=dataset, actor=request.user, budget=form.cleaned_data["budget"]
        )
    except PermissionDenied:
        raise  # someone else's listing: the styled 403
    except DomainError as exc:
        messages.error(request, f"Not changed: {exc.message}.")
    else:
        messages.success(
            request,
            f"Each compute-only licence sold from now on may spend ε = {dataset.privacy_budget}; "
            "licences already sold keep their budget.",
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


def _analysis_row(job: Job) -> dict[str, Any]:
    """A line of the user's analyses: its kind's label and what distinguishes it (" (k=3)")."""
    analysis = job.analysis
    kind = analyses.get(analysis.kind)
    return {
        "job": job,
        "version": analysis.version,
        "label": kind.label if kind else analysis.kind,
        "summary": kind.summary(analysis.options) if kind else "",
    }


def _options_shown(analysis: Analysis) -> dict[str, Any]:
    """The options that tuned this kind of analysis: the other kinds' own options are left out, and so are those
    that its private version does not read (a private k-means has no algorithm to pick); ε is in the privacy
    section (an exact analysis spends none)."""
    kind = analyses.get(analysis.kind)
    own = set((kind.private_options if analysis.private else kind.options) if kind else ())
    others = analyses.own_options()
    return {k: v for k, v in analysis.options.items() if k in own or k not in others}


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _scientific(value: Any) -> str:
    """A small probability such as δ written as 10⁻⁸ rather than 1e-08."""
    number = _number(value)
    if number is None or not 0 < number < 1e-3:
        return _readable(value)
    mantissa, exponent = f"{number:.2e}".split("e")
    mantissa = f"{float(mantissa):g}"
    power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
    return power if mantissa == "1" else f"{mantissa} \u00d7 {power}"


def _analysis_report(job: Job) -> dict[str, Any]:
    """What the results page shows of a succeeded analysis job, read defensively from its result; its kind's
    own figures by the kind's presenter."""
    analysis = job.analysis
    outcome = job.result if isinstance(job.result, dict) else {}
    result = outcome.get("result") if isinstance(outcome.get("result"), dict) else {}
    privacy = result.get("privacy")
    privacy = _privacy(privacy, analysis) if isinstance(privacy, dict) else None
    kind = analyses.get(analysis.kind)
    return {
        "result": result,
        "input": result.get("input") if isinstance(result.get("input"), dict) else {},
        "charts": kind.charts(result) if kind else [],  # drawn from the stored numbers (ml.charts)
        "result_sha256": analysis.result_sha256 or None,
        "entry_seq": analysis.entry_seq,
        "privacy": privacy,
        **(kind.present(result, private=privacy is not None) if kind else {}),
    }


def _privacy(privacy: dict[str, Any], analysis: Analysis) -> dict[str, Any]:
    """The privacy block of a compute-only licensee's result, written for reading: the (ε, δ) spent, what ε
    means, how the budget was split between releases, and each figure's expected error (one standard
    deviation of its noise)."""
    epsilon = _number(privacy.get("epsilon"))
    # The ε charged to the licence, as on the ledger.
    charged = f"{analysis.epsilon:.2f}" if analysis.epsilon is not None else None
    releases = [r for r in privacy.get("releases") or [] if isinstance(r, dict)]
    total_rho = sum(_number(r.get("rho")) or 0 for r in releases)
    error_points = _number(privacy.get("explained_variance_ratio_error"))
    return {
        "epsilon": charged or (f"{epsilon:.2f}" if epsilon is not None else "—"),
        "delta": _scientific(privacy.get("delta")),
        "factor": f"{math.exp(epsilon):,.3g}" if epsilon is not None and epsilon < 700 else None,
        "releases": [
            {
                "what": str(r.get("what") or ""),
                "percent": 100 * (_number(r.get("rho")) or 0) / total_rho if total_rho else None,
            }
            for r in releases
        ],
        "size_sd": _approx(privacy.get("size_sd")),
        "cell_sd": _approx(privacy.get("cell_sd")),
        "iterations": privacy.get("iterations"),
        "covariance_entry_sd": _approx(privacy.get("covariance_entry_sd")),
        "variance_error_points": _approx(100 * error_points) if error_points is not None else None,
        "bin_sd": _approx(privacy.get("bin_sd")),
        "trees": privacy.get("trees"),
        "depth": privacy.get("depth"),
    }


@login_required
def analysis_detail(request: HttpRequest, dataset_id: int, job_id: int) -> HttpResponse:
    dataset = selectors.dataset_get_for_user(dataset_id=dataset_id, user=request.user)
    job = selectors.analysis_get_for_user(user=request.user, dataset=dataset, job_id=job_id)
    analysis = job.analysis
    kind = analyses.get(analysis.kind)
    context = {
        "dataset": dataset,
        "job": job,
        "analysis": analysis,
        "kind": analysis.kind,
        "label": kind.label if kind else analysis.kind,
        "template": kind.template if kind else None,
        "options": _options_shown(analysis),
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
            dataset = services.dataset_create(owner=request.user, **form.listing())
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
    context = {"form": form, "presets": terms_preset_descriptions()}
    return render(request, "marketplace/new.html", context)


# ---------------------------------------------------------------------------------------------------- mine


@login_required
def mine(request: HttpRequest) -> HttpResponse:
    # Sales per listing in one grouped query; an owner's listings are few, so no pagination.
    datasets = selectors.dataset_list_for_owner(owner=request.user)
    # The net is the owner's part of each sale as the ledger split it, never recomputed here.
    listings = [
        {
            "dataset": dataset,
            "sales": dataset.sales,
            "gross": format_amount(dataset.gross),
            "net": format_amount(dataset.net),
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
        "total_gross": format_amount(sum(dataset.gross for dataset in datasets)),
        "total_net": format_amount(sum(dataset.net for dataset in datasets)),
        "fee_percent": settings.MARKETPLACE_FEE_BP / 100,
    }
    return render(request, "marketplace/mine.html", context)
