"""One row of every kind, owned by one user, made through the project's services where one exists:
what the admin test lists and what the schema fuzzer aims its path ids at."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token

from albums import services as album_services
from albums.models import Album, AlbumMembership, ApiToken, Image
from albums.roles import Role
from albums.tokens import api_token_create
from workers.models import Embedding
from search.rag import services as rag_services
from search.rag.models import Label, PatchEmbedding, SupportClass, SupportImage, SupportSet
from workers.vector_store import embeddings_insert
from tests.images import image_bytes
from workers.indexing import index_job_start
from workers.models import IndexJob

# An album "indexed" under this model with 4-dimensional vectors; no encoder is ever loaded for it.
MODEL = "open-clip:tiny-vit/random@sha256:0123456789ab"
PATCH_KEY = MODEL + "|populated"
DIM = 4


@dataclass
class Populated:
    owner: object
    member: object
    group: Group
    album: Album
    membership: AlbumMembership
    image: Image
    api_token: ApiToken
    api_key: str
    drf_token: Token
    embedding: Embedding
    support_set: SupportSet
    support_class: SupportClass
    support_image: SupportImage
    patch: PatchEmbedding
    job: IndexJob
    label: Label


def populate(owner) -> Populated:
    member = get_user_model().objects.create_user(username=f"{owner.username}-friend", password="pw-friend")
    group = Group.objects.create(name="curators")
    album = album_services.album_create(owner=owner, name="populated album")
    membership = album_services.album_member_add(album=album, username=member.username, role=Role.VIEWER)
    album_services.image_upload_many(album=album, user=owner, files=[("populated.jpg", io.BytesIO(image_bytes()))])
    image = Image.objects.get(album=album)
    support_set = rag_services.support_set_create(album=album, user=owner, name="populated set")
    # Then "indexed" under MODEL by hand (the spec of a support set is checked against real weights).
    Album.objects.filter(pk=album.pk).update(active_model_id=MODEL, encoder_spec="open-clip:tiny-vit/random")
    album.refresh_from_db()
    embeddings_insert(model_id=MODEL, image_ids=[image.pk], vectors=np.eye(1, DIM, dtype=np.float32))
    api_token, api_key = api_token_create(user=owner, name="populated token")
    support_class = rag_services.support_class_create(support_set=support_set, label="populated class")
    rag_services.support_images_add(support_class=support_class, user=owner, image_ids=[image.pk])
    support_image = SupportImage.objects.get(support_class=support_class)
    patch = PatchEmbedding.objects.create(support_image=support_image, support_class=support_class, model_key=PATCH_KEY,
                                          row=0, col=0, x0=0, y0=0, x1=32, y1=32, dim=DIM, vector=[1.0, 0, 0, 0])
    job, _ = index_job_start(album=album, user=owner, countdown=0)  # queued on commit: never, in a test transaction
    label = Label.objects.create(image=image, support_set=support_set, support_class=support_class, label=support_class.label,
                                 predicted_label=support_class.label, scores={support_class.label: 1.0}, margin=1.0,
                                 evidence=[{"label": support_class.label, "patch_id": patch.pk, "similarity": 1.0,
                                            "query_box": [0, 0, 32, 32], "support_image_id": support_image.pk,
                                            "image_id": image.pk, "box": [0, 0, 32, 32]}])
    return Populated(
        owner=owner, member=member, group=group, album=album, membership=membership, image=image, api_token=api_token,
        api_key=api_key, drf_token=Token.objects.create(user=owner), embedding=Embedding.objects.get(image=image),
        support_set=support_set, support_class=support_class, support_image=support_image, patch=patch, job=job,
        label=label,
    )
