"""Token accounts: their names, opening them, and double-entry postings that move tokens between them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from ledger import chain, names
from ledger.models import Account, Entry
from ledger.names import ISSUANCE, TREASURY, account_name
from ledger.services.journal import entry_append, require_transaction
from platform_site.accounts import selectors as accounts_selectors
from platform_site.errors import DomainError

if TYPE_CHECKING:
    from platform_site.accounts.models import Organization, User

# Every amount and every balance fits in exact JSON (and so in a bigint): the total supply is bounded by this,
# and every account holds at most the total supply.
AMOUNT_MAX = chain.JSON_INT_MAX
MINT_KIND = "ledger.mint"
ESCROW_KINDS = ("ledger.escrow.opened", "ledger.escrow.released", "ledger.escrow.refunded")


class InsufficientFunds(DomainError):
    """An account cannot pay. The message names the account; the service that knows whose it is tells its owner
    with `to_owner`, in words, since an API answer or a page must not show internal account names."""

    code = "insufficient_funds"

    def __init__(self, message: str, *, balance: int | None = None, needed: int | None = None) -> None:
        super().__init__(message)
        self.balance, self.needed = balance, needed

    def to_owner(self, *, what: str = "this costs") -> InsufficientFunds:
        """The same refusal as the payer reads it: "your balance is 0.00 tokens; this costs 150.00 tokens"."""
        if self.balance is None or self.needed is None:
            return self
        return InsufficientFunds(
            f"your balance is {format_amount(self.balance)}; {what} {format_amount(self.needed)}",
            balance=self.balance,
            needed=self.needed,
        )


class UnknownAccount(DomainError):
    code = "unknown_account"


# The names these had before account_name(): kept so that callers in other apps keep working.
def account_name_for_user(user: User) -> str:
    return account_name(user=user)


def account_name_for_org(org: Organization) -> str:
    return account_name(org=org)


def account_parse(name: object) -> tuple[str, int | None]:
    """(kind, id) of a canonical account name; UnknownAccount (a 400 that says the right spelling) otherwise."""
    try:
        return names.parse_account_name(name)
    except ValueError as exc:
        raise UnknownAccount(str(exc)) from None


def _owner_exists(kind: str, ident: int | None) -> bool:
    if kind in (names.USER, names.DEPOSIT):  # a call deposit belongs to a user
        return accounts_selectors.user_is_active(user_id=ident)
    if kind == names.ORG:
        return accounts_selectors.organization_exists(organization_id=ident)
    # dao and escrow accounts are opened by their makers (account_open_for_app, escrow_open), never on first use.
    return kind in (ISSUANCE, TREASURY)


def account_open(*, name: str) -> Account:
    """The account with this name, created (empty) when its owner exists; UnknownAccount otherwise."""
    kind, ident = account_parse(name)
    account = Account.objects.filter(name=name).first()
    if account is not None:
        return account
    if not _owner_exists(kind, ident):
        raise UnknownAccount(f"no account {name!r}")
    try:
        # A savepoint: losing the race to another creator must not abort the caller's transaction.
        with transaction.atomic():
            return Account.objects.create(name=name, kind=kind)
    except IntegrityError:
        return Account.objects.get(name=name)


def account_open_for_app(*, name: str, kind: str) -> Account:
    """For apps whose owners the ledger cannot look up (DAOs): open `dao:<id>` once the app has made the DAO."""
    if account_parse(name)[0] != kind:
        raise UnknownAccount(f"{name!r} is not a {kind} account")
    account, _ = Account.objects.get_or_create(name=name, defaults={"kind": kind})
    return account


def account_check_destination(*, name: str, system_ok: bool = False) -> str:
    """`name` when tokens may be sent there: a user, organization or DAO account (or, with
    `system_ok`, for the platform's own rules, the treasury). A DomainError (400) that says why otherwise.

    Never issuance (a credit there burns tokens) nor an escrow account (only its escrow moves its tokens, and a
    closed one never again). Users may not send to the treasury: it holds only the fees the platform's rules
    take, so its balance is auditable as exactly those, and a user who sent tokens there could not get them
    back."""
    kind, _ident = account_parse(name)
    if kind == ISSUANCE:
        raise DomainError("tokens cannot be sent to issuance: that would destroy them")
    if kind == names.ESCROW:
        raise DomainError(
            f"{name} is an escrow account: only its escrow's release or refund moves its tokens"
        )
    if kind == names.DEPOSIT:
        raise DomainError(f"{name} is a call deposit: only its owner's own account tops it up")
    if kind == TREASURY:
        if system_ok:
            return name
        raise DomainError("the treasury receives only the platform's fees; send tokens to a user, org or DAO")
    return name  # that it exists is checked when its row is locked (account_open)


def _check_posting_accounts(kind: str, postings: list[dict[str, Any]]) -> None:
    """Postings name canonical accounts; issuance is only debited, by a mint; escrow accounts move only by
    their escrow's entries; a call deposit `deposit:<id>` is credited only from its owner's `user:<id>`, in a
    two-posting entry (a top-up), so nobody else's tokens land in it. These keep the balances outside issuance
    equal to the total minted."""
    for posting in postings:
        account_kind, ident = account_parse(posting["account"])
        if account_kind == ISSUANCE and (kind != MINT_KIND or posting["amount"] > 0):
            raise DomainError(
                "issuance is only debited, by a mint: tokens are never sent to it"
                if posting["amount"] > 0
                else "tokens leave issuance only by a mint"
            )
        if account_kind == names.ESCROW and kind not in ESCROW_KINDS:
            raise DomainError(f"{posting['account']} moves only by its escrow's release or refund")
        if account_kind == names.DEPOSIT and posting["amount"] > 0:
            owner = account_name(user=ident)
            if len(postings) != 2 or not any(p["account"] == owner and p["amount"] < 0 for p in postings):
                raise DomainError(f"{posting['account']} is topped up only from {owner}")


def _lock_accounts(wanted: list[str]) -> dict[str, Account]:
    # Locked in primary-key order, so two transfers between the same accounts cannot deadlock.
    return {a.name: a for a in Account.objects.select_for_update().filter(name__in=wanted).order_by("pk")}


def _lock_and_check_postings(postings: list[dict[str, Any]]) -> dict[int, int]:
    """Lock the accounts the postings name and check they can pay; the new balance of each, by primary key."""
    wanted = sorted({p["account"] for p in postings})
    accounts = _lock_accounts(wanted)
    if len(accounts) < len(wanted):  # first use of an account: open it, then lock them all again
        for name in set(wanted) - accounts.keys():
            account_open(name=name)
        accounts = _lock_accounts(wanted)
    deltas: dict[str, int] = {}
    for posting in postings:
        deltas[posting["account"]] = deltas.get(posting["account"], 0) + posting["amount"]
    for name, delta in deltas.items():
        account = accounts[name]
        new = account.balance + delta
        if account.kind != Account.Kind.ISSUANCE and new < 0:
            raise InsufficientFunds(
                f"{name} holds {format_amount(account.balance)}, which is less than {format_amount(-delta)}",
                balance=account.balance,
                needed=-delta,
            )
        # Issuance is minus the supply, which bounds every other balance: checking it bounds them all.
        if account.kind == Account.Kind.ISSUANCE and -new > AMOUNT_MAX:
            raise DomainError(
                f"this would bring the total supply to {format_amount(-new)}, more than the ledger holds "
                f"({format_amount(AMOUNT_MAX)})"
            )
    return {accounts[name].pk: accounts[name].balance + delta for name, delta in deltas.items() if delta}


def format_amount(minor: int) -> str:
    """Minor units as tokens with two decimals: 12345 → '123.45 tokens'."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d} tokens"


def check_amount(amount: object) -> int:
    """`amount` when it is a whole number of minor units from 1 to AMOUNT_MAX; a DomainError (400) otherwise."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= AMOUNT_MAX:
        raise DomainError(
            f"the amount must be a whole number of minor units from 1 to {AMOUNT_MAX}, not {amount!r}"
        )
    return amount


def postings_post(
    *,
    kind: str,
    actor: str,
    postings: list[dict[str, Any]],
    payload: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    actor_key_id: str | None = None,
    actor_signature: bytes | None = None,
) -> Entry:
    """Move tokens by double-entry postings and write one entry, inside the caller's transaction."""
    require_transaction()
    try:
        chain.check_postings(postings)
    except ValueError as exc:
        raise DomainError(str(exc)) from exc
    for posting in postings:
        if abs(posting["amount"]) > AMOUNT_MAX:
            raise DomainError(
                f"a posting of {posting['amount']} is beyond what the ledger holds ({AMOUNT_MAX})"
            )
    _check_posting_accounts(kind, postings)
    balances = _lock_and_check_postings(postings)
    return entry_append(
        kind=kind,
        actor=actor,
        payload={**(payload or {}), "postings": postings},
        idempotency_key=idempotency_key,
        actor_key_id=actor_key_id,
        actor_signature=actor_signature,
        balances=balances,
    )
