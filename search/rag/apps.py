from django.apps import AppConfig


class RagConfig(AppConfig):
    name = "search.rag"
    label = "rag"
    verbose_name = "Vision RAG"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from search.rag import hooks  # hooks import models: only once the app registry is ready

        hooks.connect()  # albums and search show and filter the labels this app writes
