"""Job kinds: each app registers the function that runs its kind and the queue it runs on."""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from rest_framework import serializers


@dataclass(frozen=True)
class Presentation:
    """How a job's page and the jobs list show one job: a few labelled figures (never markup, never the whole
    result), a link to its app's page for the result, the object the job is about, and its parameters in words."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    link: tuple[str, str] | None = None  # (text, url) of the app's results page
    object: tuple[str, str] | None = None  # (name, url) of what the job is about, e.g. a dataset's version
    params: list[tuple[str, str]] | None = None  # None: the job's params as stored


# present(jobs) -> {job.pk: Presentation}: given every job of its kind on a page at once, so that it resolves their
# objects in one query per kind, not one per job. A job it leaves out is shown without a summary.
Presenter = Callable[[list[Any]], dict[int, Presentation]]


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    queue: str
    run: Callable[..., dict[str, Any]]  # run(job=..., reporter=...) -> result dict
    params: type[serializers.Serializer] | None = None
    # on_failure(job=..., error=...): the job ended failed or cancelled with this reason; it marks what the
    # job was processing (a dataset version) failed, in the transaction that ends the job.
    on_failure: Callable[..., None] | None = None
    present: Presenter | None = None


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    label: str,
    queue: str = "default",
    params: type[serializers.Serializer] | None = None,
    on_failure: Callable[..., None] | None = None,
    present: Presenter | None = None,
):
    """Decorator registering `run(*, job, reporter) -> dict` as the runner of job kind `name`.

    A runner may record its result itself with `job_succeed` inside its own transaction (see jobs.services).
    `present` says how its jobs are shown on the job pages (see Presenter)."""

    def register(func):
        _KINDS[name] = JobKind(
            name=name,
            label=label,
            queue=queue,
            run=func,
            params=params,
            on_failure=on_failure,
            present=present,
        )
        return func

    return register


def get_kind(name: str) -> JobKind:
    from platform_site.errors import DomainError

    _load_all()
    try:
        return _KINDS[name]
    except KeyError:
        raise DomainError(f"unknown job kind {name!r}") from None


def find_kind(name: str) -> JobKind | None:
    """The kind, or None for a name no app registers any more (old jobs still show)."""
    _load_all()
    return _KINDS.get(name)


def all_kinds() -> list[JobKind]:
    _load_all()
    return sorted(_KINDS.values(), key=lambda k: k.name)


@cache
def _load_all() -> None:
    """Import every app's `jobkinds.py`, which registers its kinds (once per process)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("jobkinds")
