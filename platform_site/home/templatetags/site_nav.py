from django import template
from django.urls import reverse

from platform_site.home.areas import AREAS

register = template.Library()


@register.inclusion_tag("home/_mainnav.html", takes_context=True)
def main_menu(context) -> dict:
    """The areas' links, the current one marked, those not built yet marked as coming."""
    request = context.get("request")
    path = request.path if request is not None else ""
    items = []
    for area in AREAS:
        url = reverse(area.url_name)
        items.append({"area": area, "url": url, "current": path.startswith(url)})
    return {"items": items}
