from django.contrib import admin

from search.models import Embedding


@admin.register(Embedding)
class EmbeddingAdmin(admin.ModelAdmin):
    list_display = ["image", "model_id", "dim", "created_at"]
    list_filter = ["model_id"]
    search_fields = ["image__original_name"]
    list_select_related = ["image"]
    exclude = ["vector"]  # thousands of floats help nobody in a form
    readonly_fields = ["image", "model_id", "dim", "created_at"]
