from django.db import migrations


class Migration(migrations.Migration):
    """A 512-d float32 vector is just over the TOAST threshold; stored out of line, exact scans ran
    about 3x slower (docs/design-notes.md). MAIN keeps vectors in the heap row whenever the row fits a
    page (up to ~1,900 dims) and, unlike PLAIN, still accepts a larger encoder's rows out of line
    instead of failing with "row is too big"."""

    dependencies = [("search", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE search_embedding ALTER COLUMN vector SET STORAGE MAIN",
            reverse_sql="ALTER TABLE search_embedding ALTER COLUMN vector SET STORAGE EXTERNAL",
        )
    ]
