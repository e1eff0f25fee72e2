from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("greeting", views.greeting),
    path("greeting-async", views.greeting_async),
]
