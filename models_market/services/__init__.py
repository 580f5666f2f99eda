"""Every write of the tokenized-model marketplace. Other apps import this package
(`from models_market import services`); the modules behind it may move."""

# money (tokens, licences, metering)
from models_market.services.licenses import license_purchase
from models_market.services.lineage import payment_postings, payment_shares
from models_market.services.metering import deposit_status, deposit_withdraw, predict_call
from models_market.services.receipts import leaf_bytes, receipt_proof, settle_pending
from models_market.services.tokens import (
    KEEP,
    sale_split,
    token_approve,
    token_buy,
    token_offer_set,
    token_transfer,
)
from models_market.verify_receipt import canonical_json

__all__ = [
    # money (tokens, licences, metering)
    "KEEP",
    "canonical_json",
    "deposit_status",
    "deposit_withdraw",
    "leaf_bytes",
    "license_purchase",
    "payment_postings",
    "payment_shares",
    "predict_call",
    "receipt_proof",
    "sale_split",
    "settle_pending",
    "token_approve",
    "token_buy",
    "token_offer_set",
    "token_transfer",
]
