from django.urls import path

from search import views

app_name = "search"

urlpatterns = [
    path("albums/<int:album_id>/search/", views.album_search_page, name="album"),
    path("albums/<int:album_id>/duplicates/", views.album_duplicates_page, name="duplicates"),
    path("albums/<int:album_id>/map/", views.album_map_page, name="map"),
    path("images/<int:image_id>/", views.image_page, name="image"),
    path("jobs/", views.jobs_page, name="jobs"),
]
