"""Listings on sale, made through the marketplace's services, for the home page's and the wallet's tests."""

from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace import services
from marketplace.models import Dataset, DatasetVersion
from platform_site.jobs.models import Job

CSV = b"age,spend,visits\n34,520,3\n51,610,5\n29,380,2\n"


def published(
    owner, title: str, *, price_download=None, price_compute=None, tags=(), publish=True
) -> Dataset:
    dataset = services.dataset_create(
        owner=owner, title=title, description=f"About {title}", tags=list(tags), terms_preset="research",
        price_download=price_download, price_compute=price_compute,
    )  # fmt: skip
    version = services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("data.csv", CSV)
    )
    # The statistics job runs on a worker elsewhere; here the version is marked analysed and its job done.
    DatasetVersion.objects.filter(pk=version.pk).update(status="ready", stats={"rows": 3, "n_columns": 3})
    Job.objects.filter(pk=version.stats_job_id).update(status=Job.Status.SUCCEEDED, progress=1)
    return services.dataset_publish(dataset=dataset, actor=owner) if publish else dataset
