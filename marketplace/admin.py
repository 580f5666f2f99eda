from django.contrib import admin

from marketplace.models import Analysis, Dataset, DatasetVersion, Download, License


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    fields = ["number", "format", "size", "sha256", "status", "published_seq", "created_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = [
        "id", "title", "owner", "status", "price_download", "price_compute", "preview_enabled", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "preview_enabled"]
    search_fields = ["title", "description", "owner__username"]
    list_select_related = ["owner"]
    inlines = [VersionInline]


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
class LicenseAdmin(admin.ModelAdmin):
    list_display = ["id", "buyer", "dataset", "tier", "price", "expires_at", "entry_seq", "created_at"]
    list_filter = ["tier"]
    search_fields = ["buyer__username", "dataset__title", "terms_hash"]
    list_select_related = ["buyer", "dataset"]

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


@admin.register(Analysis)
class AnalysisAdmin(LicenseAdmin):
    """Analyses: written with their job and completed with their ledger entry; read-only here."""

    list_display = ["id", "job", "user", "version", "kind", "private", "epsilon", "entry_seq", "created_at"]
    list_filter = ["kind", "private"]
    search_fields = ["user__username", "version__dataset__title", "result_sha256"]
    list_select_related = ["job", "user", "version__dataset"]
