"""Every write of the tokenized-model marketplace. Other apps import this package
(`from models_market import services`); the modules behind it may move."""

# money (tokens, licences, metering)
from models_market.services.licenses import license_purchase
from models_market.services.lineage import payment_postings, payment_shares
from models_market.services.tokens import (
    KEEP,
    sale_split,
    token_approve,
    token_buy,
    token_offer_set,
    token_transfer,
)

__all__ = [
    "KEEP",
    "license_purchase",
    "payment_postings",
    "payment_shares",
    "sale_split",
    "token_approve",
    "token_buy",
    "token_offer_set",
    "token_transfer",
]
