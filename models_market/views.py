from django.shortcuts import render

AREA = {
    "title": "Models",
    "blurb": "Supervised models trained or uploaded by their makers, each tokenized as a unique token: buy access, and every use pays its royalty.",
}


def index(request):
    return render(request, "home/area.html", {"area": AREA})
