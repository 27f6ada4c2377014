"""Set failed images back to pending and index them again, for the albums named or for all."""

from django.core.management.base import BaseCommand, CommandError

from albums.models import Album, Image
from workers.services import album_retry_failed


class Command(BaseCommand):
    help = "Retry failed images: each becomes pending again and joins an index job (all albums unless --album)."

    def add_arguments(self, parser):
        parser.add_argument("--album", type=int, action="append", dest="albums", metavar="ID",
                            help="an album id; repeat for several")

    def handle(self, *args, albums=None, **options):
        chosen = Album.objects.filter(pk__in=albums) if albums else Album.objects.filter(
            pk__in=Image.objects.filter(status=Image.Status.FAILED).values("album_id"))
        missing = set(albums or ()) - set(chosen.values_list("pk", flat=True))
        if missing:
            raise CommandError(f"No album with id {', '.join(map(str, sorted(missing)))}.")
        total = 0
        for album in chosen.order_by("pk"):
            outcome = album_retry_failed(album=album)
            total += outcome.retried
            self.stdout.write(f"album {album.pk} ({album.name}): {outcome.retried} image(s) retried"
                              + (f", index job {outcome.job_id}" if outcome.job_id else ""))
        self.stdout.write(f"{total} image(s) retried in all.")
