from django.conf import settings
from django.contrib import admin
from django.utils.html import format_html

from workers.models import Embedding, IndexJob


@admin.register(IndexJob)
class IndexJobAdmin(admin.ModelAdmin):
    list_display = ["id", "album", "kind", "model_id", "status", "done", "failed", "total", "created_at", "flower"]
    list_filter = ["kind", "status"]
    search_fields = ["album__name", "celery_task_id"]
    list_select_related = ["album"]

    @admin.display(description="Flower")
    def flower(self, job):
        if not job.celery_task_id:
            return "—"
        return format_html('<a href="{}task/{}">task</a>', settings.FLOWER_URL, job.celery_task_id)


@admin.register(Embedding)
class EmbeddingAdmin(admin.ModelAdmin):
    list_display = ["image", "model_id", "dim", "created_at"]
    list_filter = ["model_id"]
    search_fields = ["image__original_name"]
    list_select_related = ["image"]
    exclude = ["vector"]  # thousands of floats help nobody in a form
    readonly_fields = ["image", "model_id", "dim", "created_at"]
