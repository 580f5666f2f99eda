"""Every write of the models market. Apps and views import this package (`from models_market import services`);
the modules behind it may move."""

# models in (minting, training, uploads, cards)
from models_market.services.cards import (
    version_card,
    version_card_update,
    version_download_authorize,
    version_get_visible,
    version_list_ready,
)
from models_market.services.minting import royalty_check, token_mint
from models_market.services.training import model_train_run, model_train_submit
from models_market.services.uploads import (
    model_upload,
    model_upload_failed,
    model_validate_run,
)

__all__ = [
    # models in (minting, training, uploads, cards)
    "model_train_run",
    "model_train_submit",
    "model_upload",
    "model_upload_failed",
    "model_validate_run",
    "royalty_check",
    "token_mint",
    "version_card",
    "version_card_update",
    "version_download_authorize",
    "version_get_visible",
    "version_list_ready",
]
