"""ImageMask, formerly search.ImageMask, on its table search_imagemask: state only."""

import albums.models
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0006_tables_move_to_indexing_and_albums'),
        ('albums', '0003_album_pooling_storage'),
    ]

    operations = [
        # The tables stay where they are (names unchanged): only Django's idea of their app moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ImageMask',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('file', models.FileField(blank=True, max_length=300, upload_to=albums.models.mask_upload_path)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('image', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='mask', to='albums.image')),
                    ],
                    options={
                        'db_table': 'search_imagemask',
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
