import importlib

import django.db.models.deletion
from django.db import migrations, models

# SQLite rebuilds the table to change a column and drops the counters' row triggers with it:
# 0011 puts them back, both ways, and so does this.
sqlite_triggers_again = importlib.import_module(
    "delivery.migrations.0011_message_once_per_list"
).sqlite_triggers_again


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
