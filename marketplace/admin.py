from typing import Any

from django.contrib import admin

from ledger.services import format_amount
from marketplace.models import Analysis, Dataset, DatasetVersion, Download, License

MINOR_UNITS = "In minor units: 100 = 1 token. Empty: this tier is not sold."


def _tokens(minor: int | None) -> str:
    return format_amount(minor) if minor is not None else "not sold"


def tags_text(tags: Any) -> str:
    """Tags as words: "clustering, retail"."""
    return ", ".join(str(t) for t in tags) if isinstance(tags, list) and tags else "—"


def terms_text(terms: Any) -> str:
    """Terms as a sentence: "research: commercial use not allowed, redistribution not allowed, attribution required,
    365 days"."""
    if not isinstance(terms, dict) or not terms:
        return "—"
    words = {True: "allowed", False: "not allowed"}
    parts = [
        f"commercial use {words.get(terms.get('commercial_use'), '—')}",
        f"redistribution {words.get(terms.get('redistribution'), '—')}",
        "attribution " + {True: "required", False: "not required"}.get(terms.get("attribution"), "—"),
        # Terms older than the key do not allow derived models.
        f"derived models {words[terms.get('derived_models') is True]}",
        f"{terms['term_days']} days" if terms.get("term_days") else "no time limit",
    ]
    text = (f"{terms['preset']}: " if terms.get("preset") else "") + ", ".join(parts)
    return text + (f"; “{terms['free_text']}”" if terms.get("free_text") else "")


class TokensAndTermsMixin:
    """Prices in tokens, tags and terms in words, for the list and the detail pages; on the detail page each is
    shown just above the stored field it reads."""

    shown_above: dict[str, str] = {}

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f not in self.shown_above.values()]
        return [
            shown for f in fields for shown in ([self.shown_above[f]] if f in self.shown_above else []) + [f]
        ]

    @admin.display(description="download price in tokens", ordering="price_download")
    def download_price(self, obj) -> str:
        return _tokens(obj.price_download)

    @admin.display(description="compute-only price in tokens", ordering="price_compute")
    def compute_price(self, obj) -> str:
        return _tokens(obj.price_compute)

    @admin.display(description="tags in words")
    def tags_list(self, obj) -> str:
        return tags_text(obj.tags)

    @admin.display(description="terms in words")
    def terms_words(self, obj) -> str:
        return terms_text(obj.terms)


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    fields = ["number", "format", "size", "sha256", "status", "published_seq", "created_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Dataset)
class DatasetAdmin(TokensAndTermsMixin, admin.ModelAdmin):
    list_display = [
        "id", "title", "owner", "status", "download_price", "compute_price", "tags_list", "preview_enabled",
        "created_at",
    ]  # fmt: skip
    list_filter = ["status", "preview_enabled"]
    search_fields = ["title", "description", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = ["download_price", "compute_price", "tags_list", "terms_words"]
    shown_above = {
        "price_download": "download_price", "price_compute": "compute_price", "tags": "tags_list", "terms": "terms_words",
    }  # fmt: skip
    inlines = [VersionInline]

    def get_form(self, request, obj=None, change=False, **kwargs):
        help_texts = {
            "price_download": MINOR_UNITS,
            "price_compute": MINOR_UNITS,
            **kwargs.pop("help_texts", {}),
        }
        return super().get_form(request, obj, change, help_texts=help_texts, **kwargs)


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "number", "format", "size", "status", "published_seq", "created_at"]
    list_filter = ["status", "format"]
    search_fields = ["dataset__title", "sha256"]
    list_select_related = ["dataset"]
    # Written by the upload and the statistics job; the preview rows are the owner's data, shown only as stored.
    readonly_fields = ["sha256", "size", "stats", "preview", "published_seq"]


# Licenses and downloads are records of ledgered events: read-only here.
@admin.register(License)
class LicenseAdmin(TokensAndTermsMixin, admin.ModelAdmin):
    list_display = ["id", "buyer", "dataset", "tier", "price_tokens", "expires_at", "entry_seq", "created_at"]
    list_filter = ["tier"]
    search_fields = ["buyer__username", "dataset__title", "terms_hash"]
    list_select_related = ["buyer", "dataset"]
    readonly_fields = ["price_tokens", "terms_words"]
    shown_above = {"price": "price_tokens", "terms": "terms_words"}

    @admin.display(description="price in tokens", ordering="price")
    def price_tokens(self, license: License) -> str:
        return _tokens(license.price)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Download)
class DownloadAdmin(LicenseAdmin):
    list_display = ["id", "user", "version", "license", "created_at"]
    list_filter = []
    search_fields = ["user__username", "version__dataset__title"]
    list_select_related = ["user", "version", "license"]
    readonly_fields = []
    shown_above = {}


@admin.register(Analysis)
class AnalysisAdmin(LicenseAdmin):
    """Analyses: written with their job and completed with their ledger entry; read-only here."""

    list_display = ["id", "job", "user", "version", "kind", "private", "epsilon", "entry_seq", "created_at"]
    list_filter = ["kind", "private"]
    search_fields = ["user__username", "version__dataset__title", "result_sha256"]
    list_select_related = ["job", "user", "version__dataset"]
    readonly_fields = []
    shown_above = {}
