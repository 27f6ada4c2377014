from django.apps import AppConfig


class RagConfig(AppConfig):
    name = "search.rag"
    label = "rag"
    verbose_name = "Vision RAG"
    default_auto_field = "django.db.models.BigAutoField"
