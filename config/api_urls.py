from django.urls import path

from albums.api import views as albums
from config.auth_api import TokenObtainApi
from config.health import HealthApi, WebHealthApi
from search.api import maps
from search.api import views as search
from search.rag.api import labels as rag_labels
from search.rag.api import views as rag
from workers.api import views as jobs

app_name = "api"

urlpatterns = [
    path("auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("health/", HealthApi.as_view(), name="health"),
    path("health/web/", WebHealthApi.as_view(), name="health-web"),
    path("albums/", albums.AlbumListApi.as_view(), name="album-list"),
    path("albums/<int:album_id>/", albums.AlbumDetailApi.as_view(), name="album-detail"),
    path("albums/<int:album_id>/members/", albums.AlbumMemberListApi.as_view(), name="album-members"),
    path("albums/<int:album_id>/members/<int:user_id>/", albums.AlbumMemberDetailApi.as_view(), name="album-member"),
    path("albums/<int:album_id>/images/", albums.AlbumImageListApi.as_view(), name="album-images"),
    path("albums/<int:album_id>/images/bulk-delete/", albums.AlbumImageBulkDeleteApi.as_view(), name="album-images-delete"),
    path("albums/<int:album_id>/images/download/", albums.AlbumImageDownloadApi.as_view(), name="album-images-download"),
    path("albums/<int:album_id>/images/copy/", albums.AlbumImageCopyApi.as_view(), name="album-images-copy"),
    path("albums/<int:album_id>/jobs/", jobs.AlbumJobListApi.as_view(), name="album-jobs"),
    path("albums/<int:album_id>/index/", jobs.AlbumIndexApi.as_view(), name="album-index"),
    path("albums/<int:album_id>/retry-failed/", jobs.AlbumRetryFailedApi.as_view(), name="album-retry-failed"),
    path("albums/<int:album_id>/import/", jobs.AlbumFolderImportApi.as_view(), name="album-import"),
    path("albums/<int:album_id>/rebuild-failure/dismiss/", jobs.AlbumRebuildFailureDismissApi.as_view(),
         name="album-rebuild-failure-dismiss"),
    path("albums/<int:album_id>/search/", search.AlbumSearchApi.as_view(), name="album-search"),
    path("albums/<int:album_id>/duplicates/", search.AlbumDuplicatesApi.as_view(), name="album-duplicates"),
    path("albums/<int:album_id>/map/", maps.AlbumMapApi.as_view(), name="album-map"),
    path("albums/<int:album_id>/map/rebuild/", maps.AlbumMapRebuildApi.as_view(), name="album-map-rebuild"),
    path("images/<int:image_id>/", albums.ImageDetailApi.as_view(), name="image-detail"),
    path("images/<int:image_id>/similar/", search.ImageSimilarApi.as_view(), name="image-similar"),
    path("images/<int:image_id>/mask/", search.ImageMaskApi.as_view(), name="image-mask"),
    path("images/<int:image_id>/file", albums.ImageFileApi.as_view(), name="image-file"),
    path("images/<int:image_id>/thumbnail", albums.ImageThumbnailApi.as_view(), name="image-thumbnail"),
    path("jobs/<int:job_id>/", jobs.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", jobs.JobCancelApi.as_view(), name="job-cancel"),
    path("support-sets/", rag.SupportSetListApi.as_view(), name="support-set-list"),
    path("support-sets/<int:support_set_id>/", rag.SupportSetDetailApi.as_view(), name="support-set-detail"),
    path("support-sets/<int:support_set_id>/classes/", rag.SupportClassListApi.as_view(), name="support-set-classes"),
    path("support-sets/<int:support_set_id>/classify/", rag.SupportSetClassifyApi.as_view(), name="support-set-classify"),
    path("support-sets/<int:support_set_id>/label-jobs/", rag_labels.LabelJobApi.as_view(), name="support-set-label-jobs"),
    path("support-sets/<int:support_set_id>/labels/", rag_labels.LabelListApi.as_view(), name="support-set-labels"),
    path("support-sets/<int:support_set_id>/labels/export", rag_labels.LabelExportApi.as_view(),
         name="support-set-labels-export"),
    path("labels/<int:label_id>/", rag_labels.LabelDetailApi.as_view(), name="label-detail"),
    path("labels/<int:label_id>/add-to-set/", rag_labels.LabelAddToSetApi.as_view(), name="label-add-to-set"),
    path("support-classes/<int:class_id>/", rag.SupportClassDetailApi.as_view(), name="support-class-detail"),
    path("support-classes/<int:class_id>/images/", rag.SupportClassImageListApi.as_view(), name="support-class-images"),
    path("support-images/<int:support_image_id>/", rag.SupportImageDetailApi.as_view(), name="support-image-detail"),
    path("support-images/<int:support_image_id>/crop", rag.SupportImageCropApi.as_view(), name="support-image-crop"),
]
