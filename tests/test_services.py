"""The real services: in CI these run against PostgreSQL and Redis, never a stand-in."""

from django.db import connection

from outreach_site.celery import app


def test_it_stores_data_in_postgresql(on_postgres):
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("select current_setting('server_version_num')::int")
        assert cursor.fetchone()[0] >= 130000


def test_it_reaches_the_celery_broker_on_redis(redis_url):
    assert app.conf.broker_url == redis_url
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.default_channel
        assert channel.client.ping()
