from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from albums.folder_import import folder_import
from albums.models import Album
from config.errors import ApplicationError


class Command(BaseCommand):
    help = "Import the images under PATH (inside LOUPE_IMPORT_ROOTS) into album ALBUM_ID; indexing follows."

    def add_arguments(self, parser):
        parser.add_argument("album_id", type=int)
        parser.add_argument("path")
        parser.add_argument("--user", help="username recorded as uploader (default: the album's owner)")

    def handle(self, *args, album_id: int, path: str, user: str | None, **options):
        album = Album.objects.filter(pk=album_id).first()
        if album is None:
            raise CommandError(f"No album with id {album_id}.")
        uploader = album.owner
        if user:
            uploader = get_user_model().objects.filter(username=user).first()
            if uploader is None:
                raise CommandError(f"No user named {user!r}.")

        def progress(report, seen):
            self.stdout.write(f"  {seen} files: {report.created} imported, {report.duplicates} duplicates, "
                              f"{len(report.rejected)} skipped")

        try:
            report = folder_import(album=album, user=uploader, path=path, progress=progress)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        for row in report.rejected:
            self.stdout.write(f"  skipped {row.path}: {row.reason}")
        self.stdout.write(self.style.SUCCESS(
            f"{report.created} imported, {report.duplicates} already in the album, {len(report.rejected)} skipped."
        ))
