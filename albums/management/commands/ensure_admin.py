import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from config.placeholders import is_placeholder


class Command(BaseCommand):
    help = (
        "Create the first superuser (LOUPE_ADMIN_USERNAME / LOUPE_ADMIN_PASSWORD, or a generated password printed "
        "once) when none exists. An existing admin is never changed: it runs on every start."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("LOUPE_ADMIN_USERNAME", "admin")
        password = os.environ.get("LOUPE_ADMIN_PASSWORD", "")
        if User.objects.filter(is_superuser=True).exists():
            # Runs on every `make run` and `compose up`: a password changed since install must survive it.
            self.stdout.write("An admin account exists; not changed (LOUPE_ADMIN_PASSWORD only sets the first one).")
            return
        if password and is_placeholder(password):
            self.stdout.write(self.style.WARNING(
                "LOUPE_ADMIN_PASSWORD is the shipped placeholder; ignoring it and generating a password instead."
            ))
            password = ""
        generated = not password
        password = password or secrets.token_urlsafe(18)
        User.objects.create_superuser(username=username, email=os.environ.get("LOUPE_ADMIN_EMAIL", ""), password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"\n  Created admin account — username: {username}  password: {password}\n"
                    "  This password is shown once. Change it with: python manage.py changepassword "
                    f"{username}\n"
                )
            )
        else:
            self.stdout.write(f"Created admin {username!r} with the password from LOUPE_ADMIN_PASSWORD.")
