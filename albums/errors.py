from config.errors import ApplicationError, ConflictError, NotFoundError, PermissionDeniedError


class AlbumNotFoundError(NotFoundError):
    code = "album_not_found"

    def __init__(self) -> None:
        # One message for "missing" and "not yours": nobody learns that an album exists.
        super().__init__("Album not found.")


class ImageNotFoundError(NotFoundError):
    code = "image_not_found"

    def __init__(self) -> None:
        super().__init__("Image not found.")


class ImagesNotFoundError(NotFoundError):
    """A bulk request none of whose ids is an image of the album."""

    code = "image_not_found"

    def __init__(self) -> None:
        super().__init__("None of these images is in this album.")


class RoleRequiredError(PermissionDeniedError):
    code = "role_required"

    def __init__(self, *, required: str, actual: str):
        super().__init__(
            f"This needs the {required} role on the album; you are a {actual}.",
            extra={"required_role": required, "your_role": actual},
        )


class MembershipError(ConflictError):
    code = "membership_conflict"


class UserNotFoundError(ApplicationError):
    code = "user_not_found"


class ImageFileMissingError(NotFoundError):
    """The row outlived its file: a restore without the media volume, a file deleted by hand."""

    code = "image_file_missing"

    def __init__(self, *, image_id: int, name: str) -> None:
        super().__init__(
            f"The stored file of image {image_id} is missing from storage; restore the media folder or upload the image again.",
            extra={"image_id": image_id, "file": name},
        )
