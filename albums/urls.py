from django.urls import path

from albums import views

app_name = "albums"

urlpatterns = [
    path("", views.album_list, name="list"),
    path("albums/<int:album_id>/", views.album_detail, name="detail"),
    path("albums/<int:album_id>/settings/", views.album_settings, name="settings"),
    path("albums/<int:album_id>/members/", views.album_members, name="members"),
    path("albums/<int:album_id>/members/<int:user_id>/remove/", views.album_member_remove, name="member-remove"),
    path("albums/<int:album_id>/delete/", views.album_delete, name="delete"),
    path("account/tokens/", views.api_tokens, name="tokens"),
]
