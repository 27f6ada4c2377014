from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

from config.errors import PayloadTooLargeError


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


class GuardedUploadMixin:
    """For API views that take multipart files: the size guard is installed before anything reads
    the body (session auth's CSRF check reads request.POST, which parses the upload, and Django
    refuses new handlers after that), and `uploaded_files` gives the files and the oversized names."""

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":
            request.upload_handlers = [
                UploadSizeGuard(request),
                MemoryFileUploadHandler(request),
                TemporaryFileUploadHandler(request),
            ]
        return super().initialize_request(request, *args, **kwargs)

    @staticmethod
    def uploaded_files(request) -> tuple[list, list[str]]:
        guard = request._request.upload_handlers[0]
        try:
            uploads = [f for key in request.FILES for f in request.FILES.getlist(key)]
        except (TooManyFilesSent, RequestDataTooBig):
            raise PayloadTooLargeError(
                f"Too many files in one request; send at most {settings.LOUPE_MAX_FILES_PER_REQUEST}.",
                code="too_many_files",
                extra={"max_files": settings.LOUPE_MAX_FILES_PER_REQUEST},
            ) from None
        return uploads, list(guard.oversized)
