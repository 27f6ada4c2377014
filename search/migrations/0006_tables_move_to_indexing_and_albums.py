"""Vectors move to the indexing app (workers) and uploaded masks to albums: state only."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0005_vectors_inline_uncompressed'),
    ]

    operations = [
        # The tables stay where they are (names unchanged): only Django's idea of their app moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='imagemask',
                    name='image',
                ),
                migrations.RemoveField(
                    model_name='regionembedding',
                    name='album',
                ),
                migrations.RemoveField(
                    model_name='regionembedding',
                    name='image',
                ),
                migrations.DeleteModel(
                    name='Embedding',
                ),
                migrations.DeleteModel(
                    name='ImageMask',
                ),
                migrations.DeleteModel(
                    name='RegionEmbedding',
                ),
            ],
            database_operations=[],
        ),
    ]
