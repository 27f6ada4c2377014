from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile


class UploadSizeGuard(FileUploadHandler):
    """First in the chain: stops reading a file the moment it passes the per-file limit, so an
    oversized upload costs no disk, and remembers its name so the response can say why."""

    def __init__(self, request=None):
        super().__init__(request)
        self.oversized: list[str] = []
        self._received = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self._received = 0

    def receive_data_chunk(self, raw_data, start):
        self._received += len(raw_data)
        if self._received > settings.LOUPE_MAX_UPLOAD_BYTES:
            self.oversized.append(self.file_name or "unnamed")
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler builds the file
