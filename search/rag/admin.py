from django.contrib import admin

from search.rag.models import Label, PatchEmbedding, SupportClass, SupportImage, SupportSet


class SupportClassInline(admin.TabularInline):
    model = SupportClass
    extra = 0


@admin.register(SupportSet)
class SupportSetAdmin(admin.ModelAdmin):
    list_display = ["name", "album", "encoder_spec", "patch_source", "support_resolution", "patch_size", "flag_true_label",
                    "generation"]
    list_filter = ["patch_source"]
    search_fields = ["name", "album__name"]
    list_select_related = ["album"]
    inlines = [SupportClassInline]


@admin.register(SupportImage)
class SupportImageAdmin(admin.ModelAdmin):
    list_display = ["image", "support_class", "status", "patch_count", "created_at"]
    list_filter = ["status"]
    search_fields = ["image__original_name", "support_class__label"]
    list_select_related = ["image", "support_class"]
    raw_id_fields = ["image", "support_class", "support_set"]


@admin.register(PatchEmbedding)
class PatchEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["support_image", "model_key", "row", "col", "x0", "y0", "x1", "y1"]
    list_select_related = ["support_image"]
    exclude = ["vector"]  # hundreds of floats help nobody in a form
    readonly_fields = ["support_image", "support_class", "model_key", "row", "col", "x0", "y0", "x1", "y1", "dim"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["image", "support_set", "label", "predicted_label", "margin", "source", "state", "updated_at"]
    list_filter = ["state", "source"]
    search_fields = ["image__original_name", "label", "support_set__name"]
    list_select_related = ["image", "support_set"]
    raw_id_fields = ["image", "support_set", "support_class", "job", "reviewed_by"]
    readonly_fields = ["scores", "margin", "evidence", "predicted_label", "source", "explanation", "job"]
