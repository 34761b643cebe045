from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from core.api import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/casino/", include("casino.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file (?script): no inline script, so the
    # Content-Security-Policy allows scripts from this host only.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # ReDoc's stock page loads Google Fonts: ours uses the system fonts (nothing leaves the host).
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", health.metrics),
]


def json_404(request, exception=None):
    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    return JsonResponse({"error": "Not found", "code": "not_found"}, status=404)


def json_500(request):
    return JsonResponse({"error": "Internal server error", "code": "internal_error"}, status=500)


def json_400(request, exception=None):
    return JsonResponse({"error": "Bad request", "code": "bad_request"}, status=400)


handler404 = json_404
handler500 = json_500
handler400 = json_400
