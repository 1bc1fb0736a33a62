"""One view: mark a message delivered with a single UPDATE, nothing else."""

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def delivered(request: HttpRequest, message_id: int) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE delivery_message SET status = 'delivered' WHERE id = %s", [message_id]
        )
    return HttpResponse(status=204)


urlpatterns = [path("bare/<int:message_id>/", delivered)]
