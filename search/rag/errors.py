from config.errors import ApplicationError, ConflictError, NotFoundError


class SupportSetNotFoundError(NotFoundError):
    code = "support_set_not_found"

    def __init__(self) -> None:
        # One message for "missing" and "not yours", as for albums.
        super().__init__("Support set not found.")


class SupportClassNotFoundError(NotFoundError):
    code = "support_class_not_found"

    def __init__(self) -> None:
        super().__init__("Support class not found.")


class SupportImageNotFoundError(NotFoundError):
    code = "support_image_not_found"

    def __init__(self) -> None:
        super().__init__("Support image not found.")


class LabelNotFoundError(NotFoundError):
    code = "label_not_found"

    def __init__(self) -> None:
        super().__init__("Label not found.")


class SupportSetConflictError(ConflictError):
    code = "support_set_conflict"


class SupportSetIncompleteError(ApplicationError):
    """Classification needs at least one class, and an example image in every class."""

    code = "support_set_incomplete"


class QueryImageError(ApplicationError):
    code = "invalid_query_image"
