"""Two views: one that logs, one that fails."""

import logging

from django.http import HttpRequest, JsonResponse
from django.urls import path

log = logging.getLogger("shop.views")


def show_order(request: HttpRequest, order_id: int) -> JsonResponse:
    log.info("showing order %s", order_id, extra={"order_id": order_id})
    return JsonResponse({"order": order_id})


def fail(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("the view failed")


urlpatterns = [
    path("orders/<int:order_id>", show_order),
    path("fail", fail),
]
