"""The admin's front page is the staff operations dashboard (reports/dashboard.py), above the usual app list."""

from django.contrib import admin

from reports.dashboard import dashboard_context

admin.site.index_template = "admin/reports/dashboard.html"
_site_index = admin.site.index


def dashboard_index(request, extra_context=None):
    """The site's index view (staff only, as every admin view) with the dashboard's figures."""
    return _site_index(request, extra_context={**dashboard_context(), **(extra_context or {})})


admin.site.index = dashboard_index
