"""Building ledgers for the tests through the real services."""

from django.db import transaction

from ledger import services


def fund(name: str, amount: int) -> None:
    with transaction.atomic():
        services.mint(destination=name, amount=amount, actor="system", reason="test funds")


def pay(source: str, destination: str, amount: int, **kwargs) -> None:
    with transaction.atomic():
        services.transfer(source=source, destination=destination, amount=amount, actor=source, **kwargs)
