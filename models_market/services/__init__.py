"""Every write of the tokenized-model marketplace. Views, APIs, tasks and other apps import this package
(`from models_market import services`); the modules behind it may move."""

from models_market.services.cards import (
    version_card,
    version_card_update,
    version_download_authorize,
    version_get_visible,
    version_list_ready,
)
from models_market.services.evaluations import (
    evaluation_failed,
    evaluation_run,
    evaluation_submit,
    evaluations_expire,
)
from models_market.services.federated import federated_model_publish
from models_market.services.guarantees import (
    guarantee_evaluate_run,
    guarantee_failed,
    guarantee_set,
    guarantee_terms,
    guarantees_expire,
    license_purchase_guaranteed,
)
from models_market.services.licenses import license_purchase, offer_terms
from models_market.services.lineage import payment_postings, payment_shares
from models_market.services.metering import deposit_status, deposit_withdraw, predict_call
from models_market.services.minting import royalty_check, token_mint
from models_market.services.receipts import leaf_bytes, receipt_proof, settle_pending
from models_market.services.tokens import (
    KEEP,
    sale_split,
    token_approve,
    token_buy,
    token_offer_set,
    token_transfer,
)
from models_market.services.training import model_train_run, model_train_submit
from models_market.services.uploads import (
    model_upload,
    model_upload_failed,
    model_validate_run,
)
from models_market.verify_receipt import canonical_json

__all__ = [
    "KEEP",
    "canonical_json",
    "deposit_status",
    "deposit_withdraw",
    "evaluation_failed",
    "evaluation_run",
    "evaluation_submit",
    "evaluations_expire",
    "federated_model_publish",
    "guarantee_evaluate_run",
    "guarantee_failed",
    "guarantee_set",
    "guarantee_terms",
    "guarantees_expire",
    "leaf_bytes",
    "license_purchase",
    "license_purchase_guaranteed",
    "model_train_run",
    "model_train_submit",
    "model_upload",
    "model_upload_failed",
    "model_validate_run",
    "offer_terms",
    "payment_postings",
    "payment_shares",
    "predict_call",
    "receipt_proof",
    "royalty_check",
    "sale_split",
    "settle_pending",
    "token_approve",
    "token_buy",
    "token_mint",
    "token_offer_set",
    "token_transfer",
    "version_card",
    "version_card_update",
    "version_download_authorize",
    "version_get_visible",
    "version_list_ready",
]
