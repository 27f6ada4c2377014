"""Serializer fields shared by the apps' APIs."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator


class Base64Field(serializers.CharField):
    """Base64 text, such as a query image (a data URL is fine), checked as ASCII in one C call.

    DRF's CharField checks for surrogate characters with a Python loop over every character: for a
    600 KB base64 photo that was ~45 ms of CPU per search, more than encoding the image. Surrogates
    are not ASCII, so the ASCII check covers them."""

    default_error_messages = {"not_ascii": "Base64 text has ASCII characters only."}

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitSurrogateCharactersValidator)]

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if not data.isascii():
            self.fail("not_ascii")
        return data
