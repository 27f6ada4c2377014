from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from workers import hooks  # hooks import models: only once the app registry is ready

        hooks.connect()  # albums announces uploads and encoder changes; indexing answers
