from django.apps import AppConfig


class EncodersConfig(AppConfig):
    name = "encoders"
    default_auto_field = "django.db.models.BigAutoField"
