"""The model marketplace's pages: browse, one model (card, charts, lineage, token, offers, try it), the buy
confirmation, and a user's models, licences and receipts. Thin: every rule is in services and selectors."""

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from ledger.services import InsufficientFunds, format_amount
from marketplace import selectors as data_selectors
from ml import charts
from ml.evaluation import metric_names
from models_market import selectors, services
from models_market.forms import GuaranteeForm, TrainForm
from models_market.models import ModelAsset, ModelLicense, ModelToken, ModelVersion
from platform_site.errors import DomainError


def _id(text: str | None) -> int | None:
    """A whole number typed in a query or form, as a bigint id or price: ASCII digits only (`int` takes "²" for
    a digit no more than it takes 5,000 of them); None for anything else."""
    if text and text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _number(text: str) -> float:
    """A number sent back by a page (as Python writes a float); DomainError for anything else."""
    try:
        return float(text)
    except ValueError:
        raise DomainError("the guarantee's threshold is a number") from None


def _price(minor: int | None) -> str | None:
    return format_amount(minor) if minor is not None else None


def _offers(token: ModelToken | None) -> list[dict[str, Any]]:
    """The licences on offer, in words, with their prices in tokens."""
    if token is None or not token.listed:
        return []
    offers = []
    per_call = f"{format_amount(token.price_per_call)} a call" if token.price_per_call else "calls free"
    if token.price_perpetual is not None:
        offers.append({"kind": "perpetual", "label": "Perpetual", "price": _price(token.price_perpetual),
                       "detail": per_call})  # fmt: skip
    if token.price_timed is not None:
        offers.append({"kind": "timed", "label": f"{token.timed_days} days", "price": _price(token.price_timed),
                       "detail": per_call})  # fmt: skip
    if token.price_quota is not None:
        offers.append({"kind": "quota", "label": f"{token.quota_calls:,} calls", "price": _price(token.price_quota),
                       "detail": "prepaid"})  # fmt: skip
    for offer in offers:
        offer["terms"] = services.offer_terms(token=token, kind=offer["kind"])
    return offers


def _headline(version: ModelVersion) -> dict[str, Any] | None:
    """The metric a card shows first: accuracy or R², with where it comes from."""
    for name in ("accuracy", "roc_auc", "r2", "rmse"):
        metric = (version.metrics or {}).get(name)
        if isinstance(metric, dict) and isinstance(metric.get("value"), int | float):
            return {"name": name, "value": metric["value"], "source": metric.get("source", "self_reported")}
    return None


def index(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "")[:100].replace("\x00", "")  # PostgreSQL text holds no NUL
    task = request.GET.get("task", "")
    sort = request.GET.get("sort", "newest")
    kind = request.GET.get("license", "")
    tokens = list(selectors.token_list_listed(q=q, task=task, sort=sort, license_kind=kind)[:60])
    cards = [
        {"token": t, "version": t.version, "headline": _headline(t.version), "offers": _offers(t),
         "per_call": _price(t.price_per_call)}
        for t in tokens
    ]  # fmt: skip
    context = {
        "cards": cards,
        "q": q,
        "task": task,
        "sort": sort,
        "license": kind,
        "tasks": ModelAsset.Task.choices,
        "sorts": [("newest", "Newest"), ("price", "Price per call"), ("name", "Name")],
        "kinds": [
            ("", "Any licence"),
            ("perpetual", "Perpetual"),
            ("timed", "Time-limited"),
            ("quota", "Call quota"),
        ],
    }
    return render(request, "models_market/index.html", context)


def detail(request: HttpRequest, version_id: int) -> HttpResponse:
    version = services.version_get_visible(version_id=version_id, user=request.user)
    token = selectors.token_for(version)
    user = request.user
    is_owner = bool(token and user.is_authenticated and token.owner_id == user.pk)
    licences = selectors.license_list_valid(user=user, version=version)
    card = services.version_card(version, viewer=user)
    nodes, edges = selectors.lineage(version)
    evaluation = card["evaluation"] or {}
    chart_list = [
        c
        for c in (
            charts.learning_curve(
                version.curve, x_title="Round" if version.origin == "federated" else "Epoch"
            )
            if version.curve
            else None,
            charts.confusion_matrix(
                evaluation.get("confusion_matrix") or [], evaluation.get("classes") or []
            ),
            charts.calibration(evaluation.get("calibration") or {}),
            charts.lineage([n.__dict__ for n in nodes], edges),
        )
        if c
    ]
    context = {
        "version": version,
        "asset": version.asset,
        "token": token,
        "is_owner": is_owner,
        "card": card,
        "charts": chart_list,
        "offers": _offers(token),
        "licences": licences,
        "can_call": version.status == ModelVersion.Status.READY and (is_owner or bool(licences)),
        "history": selectors.token_history(token) if token else [],
        "usage": selectors.usage_for_version(version),
        "sale_price": _price(token.sale_price) if token else None,
        "example": json.dumps([_example_row(version.schema or {})], indent=1) if version.schema else "",
        "guarantee_metrics": metric_names(version.asset.task),
        "evaluation_price": f"{token.price_evaluation / 100:.2f}"
        if token and token.price_evaluation
        else None,
    }
    return render(request, "models_market/detail.html", context)


def _example_row(schema: dict[str, Any]) -> dict[str, Any]:
    row = {}
    for column in schema.get("columns") or []:
        if column.get("type") == "numeric":
            row[column["name"]] = column.get("impute", 0)
        else:
            levels = column.get("levels") or []
            row[column["name"]] = levels[0] if levels else ""
    return row


def _quote(request: HttpRequest, token: ModelToken, price: int) -> dict[str, Any]:
    balance = ledger_selectors.account_balance(name=ledger_services.account_name(user=request.user))
    return {"price": format_amount(price), "balance": format_amount(balance), "after": format_amount(balance - price),
            "affordable": balance >= price}  # fmt: skip


@login_required
def buy(request: HttpRequest, version_id: int) -> HttpResponse:
    """GET: the confirmation of a licence (or of the token itself, kind=token): price, balance, balance after;
    POST: the purchase."""
    version = services.version_get_visible(version_id=version_id, user=request.user)
    token = selectors.token_for(version)
    kind = request.POST.get("kind") if request.method == "POST" else request.GET.get("kind")
    prices = {}
    if token is not None:
        prices = {"perpetual": token.price_perpetual, "timed": token.price_timed, "quota": token.price_quota,
                  "token": token.sale_price}  # fmt: skip
    price = prices.get(kind or "")
    if token is None or price is None or (kind != "token" and not token.listed):
        messages.error(request, "That is not on sale.")
        return redirect("models_market:detail", version_id=version.pk)
    if token.owner_id == request.user.pk:
        messages.error(request, "You own this model's token.")
        return redirect("models_market:detail", version_id=version.pk)
    if request.method == "GET":
        context = {"version": version, "token": token, "kind": kind, "offer_label": _offer_label(token, kind),
                   "quote": _quote(request, token, price), "per_call": _price(token.price_per_call),
                   "royalty_percent": token.royalty_bp / 100, "terms": _terms(token, kind)}  # fmt: skip
        return render(request, "models_market/buy.html", context)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    # The terms the confirmation showed: the services refuse another offer (the owner changed it since).
    agreed = {name: _id(request.POST[name]) for name in _terms(token, kind) if name in request.POST}
    try:
        if None in agreed.values():
            raise DomainError("the offer's terms are whole numbers")
        if kind == "token":
            services.token_buy(token=token, buyer=request.user, expected_price=agreed.get("price"))
            messages.success(request, f"You own token #{token.pk} now.")
        else:
            licence = services.license_purchase(buyer=request.user, token=token, kind=kind, expected=agreed)
            messages.success(
                request,
                f"You bought a {licence.get_kind_display().lower()} licence (ledger entry #{licence.entry_seq}).",
            )
    except InsufficientFunds as exc:
        messages.error(request, f"Not bought: {exc}.")
        return redirect(f"{reverse('models_market:buy', args=[version.pk])}?kind={kind}")
    except DomainError as exc:
        messages.error(request, f"Not bought: {exc.message}.")
    return redirect("models_market:detail", version_id=version.pk)


def _terms(token: ModelToken, kind: str) -> dict[str, int | None]:
    """The terms of the offer the buyer confirms, by name: the token's price, or a licence's offer_terms."""
    return {"price": token.sale_price} if kind == "token" else services.offer_terms(token=token, kind=kind)


def _offer_label(token: ModelToken, kind: str) -> str:
    if kind == "timed":
        return f"a licence for {token.timed_days} days"
    if kind == "quota":
        return f"{token.quota_calls:,} prepaid calls"
    return {"perpetual": "a perpetual licence", "token": f"token #{token.pk} (ownership)"}.get(kind, kind)


@login_required
@require_POST
def try_model(request: HttpRequest, version_id: int) -> HttpResponse:
    """A licensee (or the owner) runs the model on rows pasted as JSON and sees the predictions and the receipt."""
    version = services.version_get_visible(version_id=version_id, user=request.user)
    text = request.POST.get("rows", "")[:100_000]
    outcome: dict[str, Any] = {"rows_text": text}
    try:
        rows = json.loads(text)
        if isinstance(rows, dict):
            rows = [rows]
        outputs, receipt = services.predict_call(user=request.user, version=version, rows=rows)
        outcome.update(predictions=list(zip(rows, outputs, strict=False)), receipt=receipt)
    except (ValueError, RecursionError):
        outcome["error"] = "the rows must be a JSON object or a list of objects, one per row"
    except DomainError as exc:
        outcome["error"] = exc.message
    return render(request, "models_market/try.html", {"version": version, **outcome})


@login_required
def train(request: HttpRequest) -> HttpResponse:
    """Train a model on a dataset version you own or license: the form (target among its columns, algorithm
    and options; ε under a compute-only licence), then the training job's live page."""
    dataset_id = _id(request.GET.get("dataset") or request.POST.get("dataset"))
    if dataset_id is None:
        context = {"datasets": selectors.trainable_datasets(user=request.user)}
        return render(request, "models_market/train_pick.html", context)
    version = data_selectors.dataset_version_get_for_user(user=request.user, dataset_id=dataset_id)
    rights = data_selectors.train_rights(user=request.user, version=version)
    columns = [c.get("name") for c in (version.stats or {}).get("columns") or [] if isinstance(c, dict)]
    form = TrainForm(request.POST or None, columns=columns, private=rights.private)
    if request.method == "POST" and rights.allowed and form.is_valid():
        try:
            job = services.model_train_submit(
                user=request.user, dataset_version=version, params=form.params()
            )
        except forms.ValidationError:
            pass
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request, f"Training started: job #{job.pk}. The model is minted as a token when it ends."
            )
            return redirect("jobs:detail", job_id=job.pk)
    context = {"form": form, "version": version, "dataset": version.dataset, "rights": rights}
    return render(request, "models_market/train.html", context)


@login_required
@require_POST
def guarantee(request: HttpRequest, version_id: int) -> HttpResponse:
    """The token's owner declares (or, with no metric, withdraws) a performance guarantee and the price of
    evaluating the model in paid evaluations."""
    version = services.version_get_visible(version_id=version_id, user=request.user)
    token = selectors.token_for(version)
    form = GuaranteeForm(request.POST)
    try:
        if token is None:
            raise DomainError("this model has no token yet")
        if not form.is_valid():
            raise DomainError("; ".join(e for errors in form.errors.values() for e in errors))
        services.guarantee_set(token=token, actor=request.user, **form.guarantee())
    except DomainError as exc:
        messages.error(request, f"Not changed: {exc.message}.")
    else:
        messages.success(request, "The guarantee is on the ledger.")
    return redirect("models_market:detail", version_id=version.pk)


@login_required
@require_POST
def buy_guaranteed(request: HttpRequest, version_id: int) -> HttpResponse:
    """Buy a licence under the model's guarantee: the price waits in escrow while a worker measures the model on
    the buyer's sealed holdout; the job's page follows it."""
    version = services.version_get_visible(version_id=version_id, user=request.user)
    token = selectors.token_for(version)
    holdout = request.FILES.get("holdout")
    kind = request.POST.get("kind", "")
    try:
        if token is None or holdout is None:
            raise DomainError("choose a file of labelled rows (CSV or JSON Lines) to measure the model on")
        # The offer and the standard the page showed: the service refuses others (the owner changed them since).
        terms = services.offer_terms(token=token, kind=kind) if kind in ModelLicense.Kind.values else {}
        agreed = {n: _id(request.POST[f"{kind}-{n}"]) for n in terms if f"{kind}-{n}" in request.POST}
        standard = {n: request.POST[n] for n in services.guarantee_terms(token=token) if n in request.POST}
        if None in agreed.values():
            raise DomainError("the offer's terms are whole numbers")
        if "threshold" in standard:
            standard["threshold"] = _number(standard["threshold"])
        purchase = services.license_purchase_guaranteed(
            buyer=request.user, token=token, kind=kind, holdout_file=holdout, expected=agreed,
            expected_standard=standard,
        )  # fmt: skip
    except InsufficientFunds as exc:
        messages.error(request, f"Not bought: {exc}.")
    except DomainError as exc:
        messages.error(request, f"Not bought: {exc.message}.")
    else:
        messages.success(
            request, "Your payment is in escrow: the model is being measured on your rows. You pay only if it "
            "meets its standard; otherwise the escrow returns your tokens.",
        )  # fmt: skip
        return redirect("jobs:detail", job_id=purchase.job_id)
    return redirect("models_market:detail", version_id=version.pk)


@login_required
def evaluate(request: HttpRequest) -> HttpResponse:
    """Rank several listed models on your own sealed holdout, as a paid service."""
    tokens = list(selectors.token_list_listed()[:200])
    if request.method == "POST":
        ids = [i for i in map(_id, request.POST.getlist("versions")) if i is not None][:50]
        versions = [t.version for t in tokens if t.version_id in ids]
        try:
            if not request.FILES.get("holdout"):
                raise DomainError("choose a file of labelled rows (CSV or JSON Lines)")
            evaluation = services.evaluation_submit(
                user=request.user, versions=versions, holdout_file=request.FILES["holdout"],
                metric=request.POST.get("metric", ""),
            )  # fmt: skip
        except InsufficientFunds as exc:
            messages.error(request, f"Not started: {exc}.")
        except DomainError as exc:
            messages.error(request, f"Not started: {exc.message}.")
        else:
            return redirect("models_market:evaluation", evaluation_id=evaluation.pk)
    context = {"tokens": tokens, "fee": format_amount(settings.MODELS_EVALUATION_FEE),
               "metrics": ["accuracy", "f1", "roc_auc", "rmse", "mae", "r2"]}  # fmt: skip
    return render(request, "models_market/evaluate.html", context)


@login_required
def evaluation(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    ev = selectors.evaluation_get_for_user(evaluation_id=evaluation_id, user=request.user)
    return render(request, "models_market/evaluation.html", {"evaluation": ev, "scores": ev.scores.all()})


@login_required
def mine(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "tokens": selectors.token_list_owned(user=user),
        "created": selectors.version_list_created(user=user),
        "licences": selectors.license_list_for_user(user=user),
        "receipts": selectors.receipt_list_for_user(user=user).select_related("version__asset")[:20],
        "guaranteed": selectors.guaranteed_purchases_for_user(user=user)[:20],
        "scores": selectors.evaluation_scores_for_owner(user=user)[:20],
    }
    return render(request, "models_market/mine.html", context)
