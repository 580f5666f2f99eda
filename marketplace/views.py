from django.shortcuts import render

AREA = {
    "title": "Data",
    "blurb": "Datasets listed by their owners with a price and terms of use: buy a license to download, or run unsupervised learning on the data without seeing a row.",
}


def index(request):
    return render(request, "home/area.html", {"area": AREA})
