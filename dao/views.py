from django.shortcuts import render

AREA = {
    "title": "DAOs",
    "blurb": "DAOs of people, AI agents and other DAOs governing a shared treasury through proposals and votes, with a learned approval model and a portfolio agent.",
}


def index(request):
    return render(request, "home/area.html", {"area": AREA})
