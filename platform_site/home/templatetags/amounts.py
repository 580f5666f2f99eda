"""`{{ minor|tokens }}`: an amount in minor units written as the ledger writes it ("1,234.50 tokens")."""

from django import template

from ledger.services import format_amount

register = template.Library()


@register.filter
def tokens(minor) -> str:
    if isinstance(minor, bool) or not isinstance(minor, int):
        return "\u2014"
    return format_amount(minor)
