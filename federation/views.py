from django.shortcuts import render

AREA = {
    "title": "Federated learning",
    "blurb": "Organizations training one model together: each trains on its own data and submits signed updates; workers aggregate robustly and privately.",
}


def index(request):
    return render(request, "home/area.html", {"area": AREA})


def detail(request, federation_id: int):
    from federation import selectors

    federation = selectors.federation_get(federation_id=federation_id)
    return render(request, "home/area.html", {"area": {**AREA, "title": federation.name}})
