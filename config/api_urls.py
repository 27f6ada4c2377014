from django.urls import path

from albums.api import views as albums
from config.auth_api import TokenObtainApi
from config.health import HealthApi
from search.api import views as search
from workers.api import views as jobs

app_name = "api"

urlpatterns = [
    path("auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("health/", HealthApi.as_view(), name="health"),
    path("albums/", albums.AlbumListApi.as_view(), name="album-list"),
    path("albums/<int:album_id>/", albums.AlbumDetailApi.as_view(), name="album-detail"),
    path("albums/<int:album_id>/members/", albums.AlbumMemberListApi.as_view(), name="album-members"),
    path("albums/<int:album_id>/members/<int:user_id>/", albums.AlbumMemberDetailApi.as_view(), name="album-member"),
    path("albums/<int:album_id>/images/", albums.AlbumImageListApi.as_view(), name="album-images"),
    path("albums/<int:album_id>/jobs/", jobs.AlbumJobListApi.as_view(), name="album-jobs"),
    path("albums/<int:album_id>/index/", jobs.AlbumIndexApi.as_view(), name="album-index"),
    path("albums/<int:album_id>/import/", jobs.AlbumFolderImportApi.as_view(), name="album-import"),
    path("albums/<int:album_id>/search/", search.AlbumSearchApi.as_view(), name="album-search"),
    path("albums/<int:album_id>/duplicates/", search.AlbumDuplicatesApi.as_view(), name="album-duplicates"),
    path("images/<int:image_id>/", albums.ImageDetailApi.as_view(), name="image-detail"),
    path("images/<int:image_id>/similar/", search.ImageSimilarApi.as_view(), name="image-similar"),
    path("images/<int:image_id>/file", albums.ImageFileApi.as_view(), name="image-file"),
    path("images/<int:image_id>/thumbnail", albums.ImageThumbnailApi.as_view(), name="image-thumbnail"),
    path("jobs/<int:job_id>/", jobs.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", jobs.JobCancelApi.as_view(), name="job-cancel"),
]
