"""Account names, spelled and checked in one place: `user:<id>`, `org:<id>`, `dao:<id>`, `escrow:<id>`,
`deposit:<user id>` (a user's call deposit: tokens set aside for metered calls), `treasury` and `issuance`. Pure: no Django, so accounts, apps and the offline verifier can all use it.

An id is ASCII digits without a leading zero (`user:7`, never `user:07` nor an Arabic-Indic seven), so that one owner has
exactly one name, and one account.
"""

import re
from typing import Protocol

ISSUANCE = "issuance"
TREASURY = "treasury"
USER, ORG, DAO, ESCROW, DEPOSIT = "user", "org", "dao", "escrow", "deposit"
# The kinds whose `<kind>:<id>` accounts belong to someone who may spend from them.
OWNER_KINDS = (USER, ORG, DAO)
ID_MAX = 2**63 - 1  # a database bigint: the largest primary key an owner can have

_ID = re.compile(r"[1-9][0-9]*")
_FORM = "user:<id>, org:<id>, dao:<id>, escrow:<id>, deposit:<id>, treasury or issuance, with <id> in ASCII digits"


class _HasPk(Protocol):
    pk: int


def _id(owner: "_HasPk | int") -> int:
    ident = owner if isinstance(owner, int) else owner.pk
    if isinstance(ident, bool) or not isinstance(ident, int) or not 0 < ident <= ID_MAX:
        raise ValueError(f"{ident!r} is not an owner id (a positive whole number)")
    return ident


def account_name(
    *,
    user: "_HasPk | int | None" = None,
    org: "_HasPk | int | None" = None,
    dao: "_HasPk | int | None" = None,
    escrow: "_HasPk | int | None" = None,
    deposit: "_HasPk | int | None" = None,
) -> str:
    """The account (and actor) name of one owner, given as an object with a pk or as an id:
    `account_name(user=alice)` is 'user:3', `account_name(org=7)` is 'org:7', `account_name(deposit=alice)` is
    'deposit:3' (alice's call deposit)."""
    given = [
        (kind, owner)
        for kind, owner in ((USER, user), (ORG, org), (DAO, dao), (ESCROW, escrow), (DEPOSIT, deposit))
        if owner is not None
    ]
    if len(given) != 1:
        raise TypeError("name exactly one owner: user=, org=, dao=, escrow= or deposit=")
    kind, owner = given[0]
    return f"{kind}:{_id(owner)}"


def parse_account_name(name: object) -> tuple[str, int | None]:
    """(kind, id) of a canonical account name, id None for treasury and issuance; ValueError with a message a
    user can act on otherwise (`user:01`, `user:²`, `org:` and `bank:1` are all refused)."""
    if not isinstance(name, str):
        raise ValueError(f"an account name is text ({_FORM}), not {type(name).__name__}")
    if name in (ISSUANCE, TREASURY):
        return name, None
    kind, sep, ident = name.partition(":")
    if not sep or kind not in (USER, ORG, DAO, ESCROW, DEPOSIT):
        raise ValueError(f"{name!r} is not an account name: use {_FORM}")
    if not _ID.fullmatch(ident):
        hint = ""
        if ident.isascii() and ident.isdigit():
            hint = f" (did you mean {kind}:{int(ident)}?)" if int(ident) else ""
        raise ValueError(
            f"{name!r} is not an account name: the id after '{kind}:' must be ASCII digits 0-9 without a "
            f"leading zero{hint}"
        )
    if int(ident) > ID_MAX:
        raise ValueError(f"{name!r} is not an account name: the id is larger than any id ({ID_MAX})")
    return kind, int(ident)


def is_account_name(name: object) -> bool:
    try:
        parse_account_name(name)
    except ValueError:
        return False
    return True
