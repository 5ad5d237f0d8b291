"""makedemouser: create (or reset) the demo staff login and print its password once."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

from runs.permissions import VOLUNTEERS_GROUP, ensure_volunteers_group


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
        # The least-privilege set for volunteers: view runs, errors and the
        # registry, run now and cancel. Put volunteers' own logins in this group.
        user.groups.add(ensure_volunteers_group())
        verb = "Created" if created else "Reset the password of"
        self.stdout.write(f"{verb} the staff login  user: {username}  password: {password}")
        self.stdout.write("(shown once; run `make demo` or this command again for a new one)")
        self.stdout.write(f"Group {VOLUNTEERS_GROUP!r}: give volunteers' staff logins this group (admin → Users).")
