from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.login import ThrottledLoginView
from search.rag.api import compat as ragvision_compat

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    # The RAG Vision Engine's endpoints, for its existing clients (search/rag/api/compat.py).
    path("api/support/upload/image", ragvision_compat.SupportUploadCompatApi.as_view(), name="ragvision-support-upload"),
    path("api/ragvision/invocations", ragvision_compat.RagVisionInvocationCompatApi.as_view(), name="ragvision-invocations"),
    path("api/ragvision/healthcheck", ragvision_compat.RagVisionHealthcheckCompatApi.as_view(), name="ragvision-healthcheck"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(success_url="/"), name="password_change"),
    path("", include("search.urls")),
    path("", include("search.rag.urls")),
    path("", include("albums.urls")),
]
