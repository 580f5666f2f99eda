"""The site's one pagination class (its own module: rest_framework.generics imports it while DRF loads)."""

from rest_framework import pagination


class Pagination(pagination.LimitOffsetPagination):
    """`?limit=&offset=` on every list: a limit above `max_limit` is clamped to it, and a limit or offset that
    is not a positive integer (negative, text, absurdly long) falls back to the default, never to a 500."""

    max_limit = 200
    # Past the last page a page is empty without a query; this bound keeps the links' arithmetic small.
    max_offset = 2**53

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), self.max_offset)
