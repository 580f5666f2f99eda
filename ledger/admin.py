"""The ledger in the admin: everything read-only (only ledger.services writes these rows), except that a witness
may be switched off and on."""

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ledger import chain
from ledger.models import (
    Account,
    Checkpoint,
    Cosignature,
    Entry,
    Escrow,
    LedgerHead,
    MerkleNode,
    SigningKey,
    Witness,
)
from ledger.services import format_amount


def _hex(data: bytes | memoryview | None) -> str:
    return bytes(data).hex() if data is not None else "—"


def _b64(data: bytes | memoryview | None) -> str:
    return chain.b64encode(bytes(data)) if data is not None else "—"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff; no add, change or delete (a POST to a change page is a 403)."""

    # A search that is a whole number looks this integer field up exactly (and by its index).
    number_search_field: str | None = None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if self.number_search_field and term.isdecimal() and int(term) < 2**63:
            return queryset.filter(**{self.number_search_field: int(term)}), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "kind", "actor", "created_at", "short_hash")
    list_filter = ("kind", "key_id")
    search_fields = ("kind", "=actor", "=idempotency_key")
    number_search_field = "seq"
    show_full_result_count = False  # COUNT(*) over the whole journal on every search is a full scan
    fields = (
        "seq", "kind", "actor", "created_at", "key_id", "actor_key_id", "postings_tokens", "payload", "idempotency_key",
        "prev_hash_hex", "entry_hash_hex", "leaf_hash_hex", "signature_b64", "actor_signature_b64", "page_link",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="hash")
    def short_hash(self, entry: Entry) -> str:
        return _hex(entry.entry_hash)[:12] + "…"

    @admin.display(description="postings (tokens)")
    def postings_tokens(self, entry: Entry) -> str:
        postings = entry.payload.get("postings") if isinstance(entry.payload, dict) else None
        lines = [
            f"{p.get('account')}: {'+' if p['amount'] > 0 else ''}{format_amount(p['amount'])}"
            for p in postings or []
            if isinstance(p, dict) and isinstance(p.get("amount"), int)
        ]
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines)) or "—"

    @admin.display(description="prev_hash")
    def prev_hash_hex(self, entry: Entry) -> str:
        return _hex(entry.prev_hash)

    @admin.display(description="entry_hash")
    def entry_hash_hex(self, entry: Entry) -> str:
        return _hex(entry.entry_hash)

    @admin.display(description="leaf_hash")
    def leaf_hash_hex(self, entry: Entry) -> str:
        return _hex(entry.leaf_hash)

    @admin.display(description="signature (base64)")
    def signature_b64(self, entry: Entry) -> str:
        return _b64(entry.signature)

    @admin.display(description="actor signature (base64)")
    def actor_signature_b64(self, entry: Entry) -> str:
        return _b64(entry.actor_signature)

    @admin.display(description="verification")
    def page_link(self, entry: Entry) -> str:
        return format_html(
            '<a href="{}">entry page, checked on the server</a>', reverse("ledger:entry", args=[entry.seq])
        )


@admin.register(MerkleNode)
class MerkleNodeAdmin(ReadOnlyAdmin):
    list_display = ("level", "index", "hash_hex")
    list_filter = ("level",)
    search_fields = ("index__exact",)  # the box; a number goes through number_search_field
    number_search_field = "index"
    show_full_result_count = False
    fields = ("level", "index", "hash_hex")
    readonly_fields = fields

    @admin.display(description="hash")
    def hash_hex(self, node: MerkleNode) -> str:
        return _hex(node.hash)


class CosignatureInline(admin.TabularInline):
    model = Cosignature
    extra = 0
    fields = ("witness", "timestamp", "line", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("tree_size", "key_id", "created_at", "root_hex")
    list_filter = ("key_id",)
    search_fields = ("key_id",)
    number_search_field = "tree_size"
    fields = ("tree_size", "key_id", "created_at", "root_hex", "note")
    readonly_fields = fields
    inlines = (CosignatureInline,)

    @admin.display(description="root hash")
    def root_hex(self, checkpoint: Checkpoint) -> str:
        return _hex(checkpoint.root_hash)


@admin.register(Cosignature)
class CosignatureAdmin(ReadOnlyAdmin):
    list_display = ("checkpoint", "witness", "timestamp", "created_at")
    list_filter = ("witness",)
    list_select_related = ("checkpoint", "witness")
    search_fields = ("witness__name",)
    fields = ("checkpoint", "witness", "timestamp", "line", "created_at")
    readonly_fields = fields


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "first_seq", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("key_id", "verifier_key")
    fields = ("key_id", "first_seq", "active", "verifier_key", "public_key_b64", "created_at")
    readonly_fields = fields

    @admin.display(description="public key (base64)")
    def public_key_b64(self, key: SigningKey) -> str:
        return _b64(key.public_key)


@admin.register(LedgerHead)
class LedgerHeadAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "size", "head_hash_hex", "active_key_id")
    fields = ("size", "head_hash_hex", "active_key_id", "frontier")
    readonly_fields = fields

    @admin.display(description="head hash")
    def head_hash_hex(self, head: LedgerHead) -> str:
        return _hex(head.head_hash)


@admin.register(Witness)
class WitnessAdmin(admin.ModelAdmin):
    """Only `active` may change: a witness that misbehaves is switched off, never edited or deleted."""

    list_display = ("name", "organization", "key_id", "active", "last_tree_size", "created_at")
    list_editable = ("active",)
    list_filter = ("active",)
    list_select_related = ("organization",)
    search_fields = ("name", "organization__name", "key_id")
    fields = ("name", "organization", "key_id", "verifier_key", "active", "last_tree_size", "created_at")
    readonly_fields = ("name", "organization", "key_id", "verifier_key", "last_tree_size", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # witnesses register through the API, with their organization owner's consent

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # their cosignatures refer to them


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "balance_tokens", "created_at")
    list_filter = ("kind",)
    search_fields = ("=name",)
    fields = ("name", "kind", "balance_tokens", "balance", "created_at")
    readonly_fields = fields

    @admin.display(description="balance", ordering="balance")
    def balance_tokens(self, account: Account) -> str:
        return format_amount(account.balance)


@admin.register(Escrow)
class EscrowAdmin(ReadOnlyAdmin):
    list_display = ("pk", "payer", "payee", "amount_tokens", "status", "deadline", "opened_seq", "closed_seq")
    list_filter = ("status",)
    search_fields = ("=payer", "=payee")
    fields = (
        "payer", "payee", "amount_tokens", "amount", "condition", "deadline", "status", "opened_seq", "closed_seq",
        "created_at",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="amount", ordering="amount")
    def amount_tokens(self, escrow: Escrow) -> str:
        return format_amount(escrow.amount)
