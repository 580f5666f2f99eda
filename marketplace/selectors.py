from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from marketplace.models import Dataset, License
from platform_site.accounts.models import User
from platform_site.errors import NotFound


def dataset_list_public(
    *,
    q: str = "",
    tier: str = "",
    tag: str = "",
    owner: str = "",
    price_max: int | None = None,
    ordering: str = "-created_at",
) -> QuerySet[Dataset]:
    """Published listings matching a search, with owner and version loaded (constant queries per page)."""
    datasets = Dataset.objects.filter(status=Dataset.Status.PUBLISHED).select_related(
        "owner", "current_version"
    )
    if q:
        datasets = datasets.filter(Q(title__icontains=q) | Q(description__icontains=q) | Q(tags__icontains=q))
    if tier == "download":
        datasets = datasets.filter(price_download__isnull=False)
    elif tier == "compute":
        datasets = datasets.filter(price_compute__isnull=False)
    if tag:
        datasets = datasets.filter(tags__icontains=f'"{tag.lower()}"')
    if owner:
        datasets = datasets.filter(owner__username=owner)
    if price_max is not None:
        datasets = datasets.filter(Q(price_download__lte=price_max) | Q(price_compute__lte=price_max))
    return datasets.order_by(ordering, "-pk")


def dataset_get_for_user(*, dataset_id: int, user: User) -> Dataset:
    """A published or withdrawn listing, or the user's own draft; NotFound otherwise."""
    dataset = Dataset.objects.select_related("owner", "current_version").filter(pk=dataset_id).first()
    if dataset is None or (dataset.status == Dataset.Status.DRAFT and dataset.owner_id != user.pk):
        raise NotFound("no such dataset")
    return dataset


def license_list_for_user(*, user: User) -> QuerySet[License]:
    return License.objects.filter(buyer=user).select_related("dataset", "version")


def license_list_valid(*, user: User, dataset: Dataset) -> QuerySet[License]:
    """The user's unexpired licenses for one dataset."""
    return (
        License.objects.filter(buyer=user, dataset=dataset)
        .exclude(expires_at__lt=timezone.now())
        .select_related("version")
    )


def dataset_list_for_owner(*, owner: User) -> QuerySet[Dataset]:
    """The owner's listings with their sales count and gross, in one grouped query."""
    return (
        Dataset.objects.filter(owner=owner)
        .select_related("current_version")
        .annotate(sales=Count("licenses"), gross=Sum("licenses__price"))
        .order_by("-created_at", "-pk")
    )
