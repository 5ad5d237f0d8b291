from django.conf import settings
from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "syncsite"
admin.site.site_title = "syncsite"
admin.site.index_title = "Sync runs and club registry"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
