"""Triggers that keep delivery_messagecount exact on every insert, status change and delete.

PostgreSQL uses statement-level triggers with transition tables, so a million-row import or a
bulk update adds one grouped upsert, not a million; SQLite (the embedded run) uses row triggers.
Upserts go in (list, status) order so that concurrent transactions lock counters in one order.
"""

from django.db import migrations

PG = """
CREATE OR REPLACE FUNCTION outreach_counts_insert() RETURNS trigger AS $$
BEGIN
  INSERT INTO delivery_messagecount (recipient_list_id, campaign_id, status, count)
  SELECT recipient_list_id, campaign_id, status, count(*) FROM new_rows
  GROUP BY 1, 2, 3 ORDER BY 1, 3
  ON CONFLICT (recipient_list_id, status)
  DO UPDATE SET count = delivery_messagecount.count + EXCLUDED.count;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION outreach_counts_update() RETURNS trigger AS $$
BEGIN
  INSERT INTO delivery_messagecount (recipient_list_id, campaign_id, status, count)
  SELECT recipient_list_id, campaign_id, status, sum(delta) FROM (
    SELECT o.recipient_list_id, o.campaign_id, o.status, -1 AS delta
      FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.status <> n.status
    UNION ALL
    SELECT n.recipient_list_id, n.campaign_id, n.status, 1 AS delta
      FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.status <> n.status
  ) changes
  GROUP BY 1, 2, 3 ORDER BY 1, 3
  ON CONFLICT (recipient_list_id, status)
  DO UPDATE SET count = delivery_messagecount.count + EXCLUDED.count;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION outreach_counts_delete() RETURNS trigger AS $$
BEGIN
  UPDATE delivery_messagecount c SET count = c.count - d.n
  FROM (SELECT recipient_list_id, status, count(*) AS n FROM old_rows GROUP BY 1, 2) d
  WHERE c.recipient_list_id = d.recipient_list_id AND c.status = d.status;
  RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER outreach_counts_insert AFTER INSERT ON delivery_message
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outreach_counts_insert();
CREATE TRIGGER outreach_counts_update AFTER UPDATE ON delivery_message
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION outreach_counts_update();
CREATE TRIGGER outreach_counts_delete AFTER DELETE ON delivery_message
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION outreach_counts_delete();
"""

PG_REVERSE = """
DROP TRIGGER IF EXISTS outreach_counts_insert ON delivery_message;
DROP TRIGGER IF EXISTS outreach_counts_update ON delivery_message;
DROP TRIGGER IF EXISTS outreach_counts_delete ON delivery_message;
DROP FUNCTION IF EXISTS outreach_counts_insert();
DROP FUNCTION IF EXISTS outreach_counts_update();
DROP FUNCTION IF EXISTS outreach_counts_delete();
"""

SQLITE = [
    """
    CREATE TRIGGER outreach_counts_insert AFTER INSERT ON delivery_message BEGIN
      INSERT INTO delivery_messagecount (recipient_list_id, campaign_id, status, count)
      VALUES (NEW.recipient_list_id, NEW.campaign_id, NEW.status, 1)
      ON CONFLICT (recipient_list_id, status) DO UPDATE SET count = count + 1;
    END
    """,
    """
    CREATE TRIGGER outreach_counts_update AFTER UPDATE OF status ON delivery_message
    WHEN OLD.status <> NEW.status BEGIN
      UPDATE delivery_messagecount SET count = count - 1
      WHERE recipient_list_id = OLD.recipient_list_id AND status = OLD.status;
      INSERT INTO delivery_messagecount (recipient_list_id, campaign_id, status, count)
      VALUES (NEW.recipient_list_id, NEW.campaign_id, NEW.status, 1)
      ON CONFLICT (recipient_list_id, status) DO UPDATE SET count = count + 1;
    END
    """,
    """
    CREATE TRIGGER outreach_counts_delete AFTER DELETE ON delivery_message BEGIN
      UPDATE delivery_messagecount SET count = count - 1
      WHERE recipient_list_id = OLD.recipient_list_id AND status = OLD.status;
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS outreach_counts_insert",
    "DROP TRIGGER IF EXISTS outreach_counts_update",
    "DROP TRIGGER IF EXISTS outreach_counts_delete",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG)
    else:
        for statement in SQLITE:
            schema_editor.execute(statement)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_REVERSE)
    else:
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("delivery", "0005_message_counts")]

    operations = [migrations.RunPython(create, drop)]
