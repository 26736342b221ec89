"""The project's URLs plus /bench/floor/: a bare DRF view behind the same JWT authentication, what
no endpoint can beat. Mounted only by bench/api.py (through api_floor_settings), never by the project."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import handler400, handler403, handler404, handler500, urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


class FloorApi(APIView):
    def get(self, request):
        return Response({"user": request.user.pk})


urlpatterns = [path("bench/floor/", FloorApi.as_view()), *urlpatterns]
