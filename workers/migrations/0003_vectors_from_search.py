"""Embedding and RegionEmbedding, formerly in search, on their tables: state only."""

import django.db.models.deletion
import pgvector.django.vector
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0006_tables_move_to_indexing_and_albums'),
        ('albums', '0004_imagemask_from_search'),
        ('workers', '0002_duplicate_scans'),
    ]

    operations = [
        # The tables stay where they are (names unchanged): only Django's idea of their app moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Embedding',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('model_id', models.CharField(max_length=300)),
                        ('dim', models.PositiveIntegerField()),
                        ('vector', pgvector.django.vector.VectorField()),
                        ('pooling_note', models.CharField(blank=True, db_default='', default='', max_length=200)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('album', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='albums.album')),
                        ('image', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='embeddings', to='albums.image')),
                    ],
                    options={
                        'db_table': 'search_embedding',
                        'indexes': [models.Index(fields=['album', 'model_id'], name='embedding_album_model')],
                        'constraints': [models.UniqueConstraint(fields=('image', 'model_id'), name='embedding_unique_image_model'), models.CheckConstraint(condition=models.Q(('dim__gt', 0)), name='embedding_dim_positive')],
                    },
                ),
                migrations.CreateModel(
                    name='RegionEmbedding',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('model_id', models.CharField(max_length=300)),
                        ('cell', models.PositiveSmallIntegerField()),
                        ('vector', pgvector.django.vector.VectorField()),
                        ('album', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='albums.album')),
                        ('image', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='region_embeddings', to='albums.image')),
                    ],
                    options={
                        'db_table': 'search_regionembedding',
                        'indexes': [models.Index(fields=['album', 'model_id'], name='region_album_model')],
                        'constraints': [models.UniqueConstraint(fields=('image', 'model_id', 'cell'), name='region_unique_image_model_cell')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
