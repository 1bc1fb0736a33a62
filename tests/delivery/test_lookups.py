"""`field__any`: the same rows as `__in`, with one array parameter on PostgreSQL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery.models import Message, Suppression
from tests.factories import MessageFactory, SuppressionFactory

pytestmark = pytest.mark.django_db


def test_it_finds_the_same_rows_as_in():
    messages = MessageFactory.create_batch(4)
    wanted = [messages[0].pk, messages[2].pk, 10**12]

    assert set(Message.objects.filter(pk__any=wanted)) == set(Message.objects.filter(pk__in=wanted))
    assert not Message.objects.filter(pk__any=[]).exists()
    subquery = Message.objects.filter(pk=messages[1].pk).values("pk")
    assert list(Message.objects.filter(pk__any=subquery)) == [messages[1]]


def test_it_matches_strings_and_sends_one_parameter_on_postgresql():
    kept = SuppressionFactory(address="+14155550001")
    SuppressionFactory(address="+14155550002")
    addresses = [f"+1415555{i:04d}" for i in range(1, 1000, 2)]

    with CaptureQueriesContext(connection) as queries:
        found = list(Suppression.objects.filter(address__any=addresses))

    assert found == [kept]
    if connection.vendor == "postgresql":
        assert "= ANY(" in queries[0]["sql"] and " IN (" not in queries[0]["sql"]
