from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from albums import hooks
        from search.masks import mask_files

        hooks.image_files.connect(mask_files, dispatch_uid="search.mask_files")  # deleted with their images
