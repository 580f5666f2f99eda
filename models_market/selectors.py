"""Reads of the models market that pages and the API share."""

from django.db.models import Q, QuerySet

from models_market.models import ModelLicense, ModelToken, ModelVersion, Receipt
from platform_site.accounts.models import User
from platform_site.errors import NotFound

# ---- money (tokens, licences, metered calls)


def token_get(*, token_id: int) -> ModelToken:
    """A token by its id, with its version and the people it names. Tokens are public, as on a chain."""
    token = (
        ModelToken.objects.select_related("version__asset", "owner", "creator", "approved")
        .filter(pk=token_id)
        .first()
    )
    if token is None:
        raise NotFound("no such token")
    return token


def version_get_for_call(*, version_id: int) -> ModelVersion:
    """A ready model version with its token, for the predict endpoint; NotFound otherwise."""
    version = (
        ModelVersion.objects.select_related("token")
        .filter(pk=version_id, status=ModelVersion.Status.READY)
        .first()
    )
    if version is None:
        raise NotFound("no such model version ready to call")
    return version


def license_list_for_user(*, user: User) -> QuerySet[ModelLicense]:
    """The user's model licences, newest first, with the model they are for."""
    return (
        ModelLicense.objects.filter(holder=user)
        .select_related("version__asset", "version__token")
        .order_by("-created_at", "-pk")
    )


def receipt_get_for_user(*, receipt_id: int, user: User) -> Receipt:
    """A receipt its caller or the model's token owner may read; NotFound for anyone else (whether it exists is
    theirs to know)."""
    receipt = (
        Receipt.objects.select_related("settlement")
        .filter(Q(caller=user) | Q(version__token__owner=user), pk=receipt_id)
        .first()
    )
    if receipt is None:
        raise NotFound("no such receipt")
    return receipt


def receipt_list_for_user(*, user: User) -> QuerySet[Receipt]:
    """The receipts of the user's own calls, newest first."""
    return Receipt.objects.filter(caller=user).select_related("settlement").order_by("-pk")
