from django.shortcuts import render

AREA = {
    "title": "Ledger",
    "blurb": "Every transaction on the platform, in one signed, hash-chained, Merkle-checkpointed journal that anyone can verify from an export.",
}


def index(request):
    return render(request, "home/area.html", {"area": AREA})
