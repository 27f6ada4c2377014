"""Start the background download of the default text encoder when its weights are missing; what
`make run` does at each start (config/launcher.py). Returns at once: the download is a job."""

from django.core.management.base import BaseCommand

from encoders.errors import EncoderError
from encoders.registry import default_text_encoder
from encoders.weights import default_fetch_allowed, find_weights
from workers.fetching import model_fetch_start


class Command(BaseCommand):
    help = ("Queue a model fetch job for the first text encoder of LOUPE_DEFAULT_ENCODERS when its weights are "
            "missing (LOUPE_ALLOW_DOWNLOADS auto or true); progress on the jobs page and in Flower.")

    def handle(self, *args, **options):
        try:
            self._start()
        except EncoderError as error:  # a bad LOUPE_DEFAULT_ENCODERS: said here, and again by album creation
            self.stderr.write(f"Not downloading the default text encoder: {error.message}")

    def _start(self) -> None:
        if not default_fetch_allowed():
            self.stdout.write("LOUPE_ALLOW_DOWNLOADS=false: no model is downloaded.")
            return
        spec = default_text_encoder()
        if spec is None:
            self.stdout.write("LOUPE_DEFAULT_ENCODERS names no encoder with a text tower: nothing to download.")
            return
        found = find_weights(spec)
        if found is not None:
            self.stdout.write(f"{spec}: weights present at {found.path}.")
            return
        job, created = model_fetch_start(spec=str(spec))
        self.stdout.write(f"{spec}: {'downloading' if created else 'already downloading'} in the background "
                          f"(job {job.pk}; progress on the jobs page and in Flower).")
