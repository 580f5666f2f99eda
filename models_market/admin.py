"""The models market in the Django admin: every table, amounts in tokens. Money and rights change only through
the services (and so the ledger), so the ledgered tables are read-only here."""

from django.contrib import admin

from ledger.services import format_amount
from models_market.models import (
    CallMeter,
    Evaluation,
    EvaluationScore,
    GuaranteedPurchase,
    ModelAsset,
    ModelContributor,
    ModelLicense,
    ModelParent,
    ModelToken,
    ModelVersion,
    Receipt,
    Settlement,
)


def _tokens(minor: int | None) -> str:
    return format_amount(minor) if minor is not None else "not offered"


class ReadOnly(admin.ModelAdmin):
    """Rows written with their ledger entry: change them through the services, never here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelAsset)
class ModelAssetAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "creator", "created_at")
    list_filter = ("task",)
    search_fields = ("name", "description", "creator__username")
    fields = ("name", "description", "tags", "task", "creator")
    readonly_fields = ("task", "creator")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnly):
    list_display = ("__str__", "status", "origin", "algorithm", "private", "created_by", "created_at")
    list_filter = ("status", "origin", "format", "private")
    search_fields = ("asset__name", "artifact_sha256")


@admin.register(ModelParent)
class ModelParentAdmin(ReadOnly):
    list_display = ("child", "relation", "parent")


@admin.register(ModelContributor)
class ModelContributorAdmin(ReadOnly):
    list_display = ("version", "account", "weight", "score")
    search_fields = ("account",)


@admin.register(ModelToken)
class ModelTokenAdmin(ReadOnly):
    list_display = ("__str__", "version", "owner", "creator", "royalty_bp", "listed", "per_call", "perpetual")
    list_filter = ("listed",)
    search_fields = ("version__asset__name", "owner__username", "artifact_sha256")

    @admin.display(description="per call", ordering="price_per_call")
    def per_call(self, token: ModelToken) -> str:
        return _tokens(token.price_per_call)

    @admin.display(description="perpetual licence", ordering="price_perpetual")
    def perpetual(self, token: ModelToken) -> str:
        return _tokens(token.price_perpetual)


@admin.register(ModelLicense)
class ModelLicenseAdmin(ReadOnly):
    list_display = ("__str__", "version", "holder", "kind", "paid", "expires_at", "calls_left", "calls_made")
    list_filter = ("kind",)
    search_fields = ("holder__username", "version__asset__name")

    @admin.display(description="price", ordering="price")
    def paid(self, licence: ModelLicense) -> str:
        return _tokens(licence.price)


@admin.register(Receipt)
class ReceiptAdmin(ReadOnly):
    list_display = ("__str__", "version", "caller", "charged", "rows", "issued_at", "settlement")
    search_fields = ("caller__username", "input_sha256", "output_sha256")

    @admin.display(description="price", ordering="price")
    def charged(self, receipt: Receipt) -> str:
        return _tokens(receipt.price)


@admin.register(Settlement)
class SettlementAdmin(ReadOnly):
    list_display = ("__str__", "entry_seq", "calls", "paid", "merkle_root", "created_at")

    @admin.display(description="total", ordering="total")
    def paid(self, settlement: Settlement) -> str:
        return _tokens(settlement.total)


@admin.register(CallMeter)
class CallMeterAdmin(ReadOnly):
    list_display = ("user", "reserved_tokens")

    @admin.display(description="reserved", ordering="reserved")
    def reserved_tokens(self, meter: CallMeter) -> str:
        return _tokens(meter.reserved)


@admin.register(GuaranteedPurchase)
class GuaranteedPurchaseAdmin(ReadOnly):
    list_display = ("__str__", "buyer", "kind", "status", "measured", "created_at")
    list_filter = ("status", "kind")


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnly):
    list_display = ("__str__", "user", "metric", "status", "created_at")
    list_filter = ("status",)


@admin.register(EvaluationScore)
class EvaluationScoreAdmin(ReadOnly):
    list_display = ("evaluation", "version", "rank", "estimate", "low", "high")
