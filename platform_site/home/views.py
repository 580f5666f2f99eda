from django.shortcuts import render


def dashboard(request):
    return render(request, "home/dashboard.html", {})


def healthz(request):
    raise NotImplementedError


def ops(request):
    raise NotImplementedError
