import importlib

import django.db.models.deletion
from django.db import migrations, models

# SQLite rebuilds the table to change a column, and the rebuilt table has none of the counters'
# row triggers: put them back, both ways (as 0011 does).
_triggers = importlib.import_module("delivery.migrations.0006_message_count_triggers")


def sqlite_triggers_again(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in (*_triggers.SQLITE_REVERSE, *_triggers.SQLITE):
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0011_message_once_per_list"),
        ("recipients", "0004_contact_org_unchecked"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, sqlite_triggers_again),
        migrations.AlterField(
            model_name="message",
            name="recipient_list",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="recipients.recipientlist",
            ),
        ),
        migrations.RunPython(sqlite_triggers_again, migrations.RunPython.noop),
    ]
