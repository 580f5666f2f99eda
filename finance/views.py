from django.shortcuts import render

AREA = {
    "title": "Finance",
    "blurb": "Pre-trained fraud and risk models shared between financial institutions, fine-tuned by transfer learning, with every update reviewed.",
}


def index(request):
    return render(request, "home/area.html", {"area": AREA})
