import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Make sure a superuser exists: LOUPE_ADMIN_USERNAME / LOUPE_ADMIN_PASSWORD, or a generated password printed once."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("LOUPE_ADMIN_USERNAME", "admin")
        password = os.environ.get("LOUPE_ADMIN_PASSWORD", "")
        if User.objects.filter(is_superuser=True).exists():
            if password and (user := User.objects.filter(username=username, is_superuser=True).first()):
                if not user.check_password(password):
                    user.set_password(password)
                    user.save(update_fields=["password"])
                    self.stdout.write(f"Admin {username!r}: password set from LOUPE_ADMIN_PASSWORD.")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=os.environ.get("LOUPE_ADMIN_EMAIL", ""), password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"\n  Created admin account — username: {username}  password: {password}\n"
                    "  This password is shown once. Change it with: .venv/bin/python manage.py changepassword "
                    f"{username}\n"
                )
            )
        else:
            self.stdout.write(f"Created admin {username!r} with the password from LOUPE_ADMIN_PASSWORD.")
