"""Every write to the ledger: appends, accounts and transfers, mints, contracts, checkpoints, keys, witnesses.

Functions that take `*` arguments and no `durable` transaction of their own (entry_append, transfer, mint,
escrow_*, split_pay) must run inside the caller's transaction, so that the business rows and the entry commit
together. The `*_request` functions are the outermost services the API and pages call: they open it.

Apps import this package (`from ledger import services as ledger`); the modules behind it may move.
"""

from ledger.names import ISSUANCE, TREASURY, account_name
from ledger.services.accounts import (
    AMOUNT_MAX,
    InsufficientFunds,
    UnknownAccount,
    account_check_destination,
    account_name_for_org,
    account_name_for_user,
    account_open,
    account_open_for_app,
    account_parse,
    check_amount,
    format_amount,
    postings_post,
)
from ledger.services.checkpoints import checkpoint_create, signing_key_rotate
from ledger.services.escrow import escrow_open, escrow_refund, escrow_refund_expired, escrow_release
from ledger.services.journal import active_key_forget, active_key_sign, content_hash, entry_append
from ledger.services.transfers import (
    Share,
    faucet_request,
    mint,
    mint_request,
    split_amounts,
    split_pay,
    transfer,
    transfer_request,
)
from ledger.services.witnesses import cosignature_add, witness_register

__all__ = [
    "AMOUNT_MAX",
    "ISSUANCE",
    "TREASURY",
    "InsufficientFunds",
    "Share",
    "UnknownAccount",
    "account_check_destination",
    "account_name",
    "account_name_for_org",
    "account_name_for_user",
    "account_open",
    "account_open_for_app",
    "account_parse",
    "active_key_forget",
    "active_key_sign",
    "check_amount",
    "checkpoint_create",
    "content_hash",
    "cosignature_add",
    "entry_append",
    "escrow_open",
    "escrow_refund",
    "escrow_refund_expired",
    "escrow_release",
    "faucet_request",
    "format_amount",
    "mint",
    "mint_request",
    "postings_post",
    "signing_key_rotate",
    "split_amounts",
    "split_pay",
    "transfer",
    "transfer_request",
    "witness_register",
]
