"""Admin for federated learning: every table readable; rows behind a ledger entry cannot be edited or deleted
here (the ledger would no longer match them)."""

from django.contrib import admin

from federation.models import Federation, Party, Payout, Rejection, Round, SecaggKey, Update
from ledger.services import format_amount


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Federation)
class FederationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "name",
        "coordinator",
        "status",
        "strategy",
        "secure_aggregation",
        "rounds",
        "pool",
    ]
    list_filter = ["status", "strategy", "secure_aggregation"]
    search_fields = ["name", "coordinator__username"]
    list_select_related = ["coordinator"]

    @admin.display(description="Reward pool", ordering="reward_pool")
    def pool(self, obj: Federation) -> str:
        return format_amount(obj.reward_pool)


@admin.register(Party)
class PartyAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "federation",
        "user",
        "organization",
        "status",
        "contribution",
        "weight",
        "epsilon_spent",
    ]
    list_filter = ["status"]
    list_select_related = ["federation", "user", "organization"]


@admin.register(Round)
class RoundAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "federation",
        "number",
        "status",
        "global_sha256",
        "result_sha256",
        "aggregated_seq",
    ]
    list_filter = ["status"]
    list_select_related = ["federation"]


@admin.register(Update)
class UpdateAdmin(ReadOnlyAdmin):
    list_display = ["id", "round", "party", "sha256", "num_examples", "masked", "entry_seq"]
    list_select_related = ["round", "party"]


@admin.register(Rejection)
class RejectionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "federation",
        "round",
        "party",
        "submitted_by",
        "status_code",
        "reason",
        "entry_seq",
    ]
    list_select_related = ["federation", "round", "party", "submitted_by"]


@admin.register(SecaggKey)
class SecaggKeyAdmin(ReadOnlyAdmin):
    list_display = ["id", "round", "party", "key_id", "entry_seq"]
    list_select_related = ["round", "party"]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ["id", "federation", "party", "account", "paid", "score", "weight", "entry_seq"]
    list_select_related = ["federation", "party"]

    @admin.display(description="Paid", ordering="amount")
    def paid(self, obj: Payout) -> str:
        return format_amount(obj.amount)
