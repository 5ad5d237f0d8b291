"""makedemouser: create (or reset) the demo staff login and print its password once."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo staff user with a generated password, printed once."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        User = get_user_model()  # noqa: N806
        password = secrets.token_urlsafe(12)
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="runs", codename__in=["trigger_run", "cancel_run"])
        )
        verb = "Created" if created else "Reset the password of"
        self.stdout.write(f"{verb} the staff login  user: {username}  password: {password}")
        self.stdout.write("(shown once; run `make demo` or this command again for a new one)")
