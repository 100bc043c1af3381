import platform

import django
from django.http import HttpResponse
from django.urls import path


def index(request):
    return HttpResponse(
        f"Hello from Tussilago: Django {django.get_version()} on Python {platform.python_version()}\n",
        content_type="text/plain",
    )


urlpatterns = [path("", index)]
