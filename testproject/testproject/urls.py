from django.urls import path

from demo import views

urlpatterns = [
    path("hello/", views.hello),
    path("json/", views.json_view),
    path("db/", views.db_page),
    path("upload/", views.upload),
    path("slow/", views.slow),
    path("stream/", views.stream),
    path("download/", views.download),
    path("error/", views.error),
    path("orphan/", views.orphan),
    path("environ/", views.environ_dump),
]
