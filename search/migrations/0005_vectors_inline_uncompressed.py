from django.db import migrations

# pgvector compresses nothing itself, but PostgreSQL's toaster does: once a row passes the ~2 KB
# TOAST target it first compresses MAIN columns inline (pglz). Dense backbones' pooled features are
# half zeros (EfficientNet-Lite0: 49 % of the 1,280 values), so they compress, and every scan then
# decompresses every row: 2,000 x 1280-d scanned in 12.0 ms compressed against 1.2 ms plain, on the
# same server (docs/architecture.md, "Vector storage"). A table target of 8,160 bytes (PostgreSQL's
# maximum) leaves any row that fits a page untouched, uncompressed and inline; a wider row (float32
# past ~2,000 dims) is still compressed or moved out of line instead of failing as PLAIN would.
TABLES = ("search_embedding", "search_regionembedding", "rag_patchembedding")
ROW_TARGET = 8160


def _forward_sql(table: str) -> str:
    # subvector(...) of the whole vector is the same values in a fresh, uncompressed datum, so the
    # toaster (now with the new target) stores it inline; rows too wide for a page stay as they are.
    return (
        f"ALTER TABLE {table} SET (toast_tuple_target = {ROW_TARGET}); "
        f"UPDATE {table} SET vector = subvector(vector, 1, vector_dims(vector)) "
        f"WHERE pg_column_compression(vector) IS NOT NULL AND vector_dims(vector) <= 1900"
    )


class Migration(migrations.Migration):
    dependencies = [("search", "0004_image_masks"), ("rag", "0001_initial")]

    operations = [
        migrations.RunSQL(_forward_sql(table), reverse_sql=f"ALTER TABLE {table} RESET (toast_tuple_target)")
        for table in TABLES
    ]
