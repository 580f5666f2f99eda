"""Job kinds: each app registers the function that runs its kind and the queue it runs on."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from rest_framework import serializers


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    queue: str
    run: Callable[..., dict[str, Any]]  # run(job=..., reporter=...) -> result dict
    params: type[serializers.Serializer] | None = None


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str, *, label: str, queue: str = "default", params: type[serializers.Serializer] | None = None
):
    """Decorator registering `run(*, job, reporter) -> dict` as the runner of job kind `name`."""

    def register(func):
        _KINDS[name] = JobKind(name=name, label=label, queue=queue, run=func, params=params)
        return func

    return register


def get_kind(name: str) -> JobKind:
    from platform_site.errors import DomainError

    _load_all()
    try:
        return _KINDS[name]
    except KeyError:
        raise DomainError(f"unknown job kind {name!r}") from None


def all_kinds() -> list[JobKind]:
    _load_all()
    return sorted(_KINDS.values(), key=lambda k: k.name)


@cache
def _load_all() -> None:
    """Import every app's `jobkinds.py`, which registers its kinds (once per process)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("jobkinds")
