"""Development as runserver does it, on a fresh `django-admin startproject` site with DEBUG on,
served by `manage.py prodserve` with no other flag (issue 17): reload by default, every request on
the console, a new app watched, system checks and unapplied migrations at each reload."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import conftest
from tests.client import get
from tests.conftest import Server
from tests.test_reload import WATCHING, poll, replace

#: What manage.py would set; the tests' own (pytest-django's) must not leak into the site.
ENV = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
STAMP = r"\[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] "
HELLO_LINE = rf'^{STAMP}"GET /hello/ HTTP/1\.1" 200 11$'


def manage(site: Path, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=site, env=ENV, check=True)


@pytest.fixture
def site(tmp_path) -> Path:
    """`startproject mysite`, with django_prodserve installed, a /hello/ view, and migrated."""
    root = tmp_path / "mysite"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", root], check=True)
    settings = root / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\nINSTALLED_APPS += ['django_prodserve']\n")
    (root / "mysite" / "views.py").write_text(
        "from django.http import HttpResponse\n\n\n"
        "def hello(request):\n    return HttpResponse('Hello, site')\n"
    )
    replace(
        root / "mysite" / "urls.py",
        "urlpatterns = [",
        "from . import views\n\nurlpatterns = [\n    path('hello/', views.hello),",
    )
    manage(root, "migrate", "-v0")
    return root


@pytest.fixture
def serve_site(start_server, site, monkeypatch):
    """`manage.py prodserve 127.0.0.1:0` in the site, as a developer runs runserver."""
    monkeypatch.setattr(conftest, "MANAGE", site / "manage.py")

    def start(*args: str, reloading: bool = True) -> Server:
        server = start_server(*args, cwd=site, settings="mysite.settings")
        if reloading and "--noreload" not in args:
            server.wait_for(WATCHING)
        return server

    return start


BLOG_VIEW = (
    "from django.http import HttpResponse\n\n\n"
    "def index(request):\n    return HttpResponse('blog one')\n"
)


def add_app(site: Path, server: Server, models: str = "", template: str = "") -> Path:
    """`startapp blog` while the server runs, with a /blog/ view, installed and routed; the view
    renders blog/templates/blog/index.html when a `template` is given."""
    manage(site, "startapp", "blog")
    blog = site / "blog"
    view = BLOG_VIEW
    if template:
        (blog / "templates" / "blog").mkdir(parents=True)
        (blog / "templates" / "blog" / "index.html").write_text(template)
        view = "from django.shortcuts import render\n\n\n" + (
            "def index(request):\n    return render(request, 'blog/index.html')\n"
        )
    (blog / "views.py").write_text(view)
    if models:
        (blog / "models.py").write_text(
            "from django.db import models\n\n\n" + textwrap.dedent(models)
        )
    replace(
        site / "mysite" / "urls.py",
        "from . import views",
        "from blog import views as blog\n\nfrom . import views",
    )
    replace(
        site / "mysite" / "urls.py",
        "urlpatterns = [",
        "urlpatterns = [\n    path('blog/', blog.index),",
    )
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "INSTALLED_APPS += ['blog']\n")
    poll(server.port, "/blog/", lambda r: r.body == (template.encode() or b"blog one"))
    # The server reports what it loaded just after it is up; from then on the app is watched.
    server.wait_for(rf"{WATCHING}.*recursively.*{re.escape(str(blog))}")
    return blog


def test_debug_reloads_by_default_and_noreload_turns_it_off(serve_site, site):
    server = serve_site()
    assert "reloader pid" in server.output
    # What is watched, said so that the libraries' directories do not read as the project's.
    watching = server.wait_for(
        rf"{WATCHING} with watchfiles: recursively ([^;]+); and \d+ directories of imported modules$"
    )
    # The project; and this tree, where it is an editable install (the tests' and CI's).
    assert str(site / "mysite") in watching.group(1).split(", ")
    replace(site / "mysite" / "views.py", "Hello, site", "Hello, edited")
    poll(server.port, "/hello/", lambda r: r.body == b"Hello, edited")
    server.stop()
    server = serve_site("--noreload")
    assert "master pid" in server.output


def test_with_debug_off_nothing_reloads(serve_site, site):
    replace(site / "mysite" / "settings.py", "DEBUG = True", "DEBUG = False")
    replace(site / "mysite" / "settings.py", "ALLOWED_HOSTS = []", "ALLOWED_HOSTS = ['*']")
    server = serve_site(reloading=False)
    assert "master pid" in server.output


@pytest.mark.parametrize("flag", [(), ("--noreload",)])
def test_every_request_is_logged_like_runserver(serve_site, flag):
    server = serve_site(*flag)
    assert get(server.port, "/hello/").status == 200
    server.wait_for(HELLO_LINE)


def test_one_timestamp_style_on_the_console(serve_site):
    server = serve_site()
    get(server.port, "/hello/")
    server.wait_for(HELLO_LINE)
    stamped = [line for line in server.lines if line.startswith("[")]
    assert stamped
    assert all(re.match(STAMP, line) for line in stamped), stamped


def test_an_app_added_while_serving_is_watched_after_the_reload(serve_site, site):
    server = serve_site()
    blog = add_app(site, server)
    replace(blog / "views.py", "blog one", "blog two")
    poll(server.port, "/blog/", lambda r: r.body == b"blog two")


def edit_template(server: Server, path: Path, old: str, new: str, url: str) -> None:
    """Edit a template: the next request renders it, as runserver has it, without a restart
    (the template loaders are reset)."""
    mark = server.mark()
    replace(path, old, new)
    poll(server.port, url, lambda r: new.encode() in r.body)
    server.wait_for(rf"{re.escape(path.name)} changed, applied without a restart", start=mark)
    assert not [line for line in server.lines[mark:] if "reloading" in line]


def test_the_templates_of_an_app_added_while_serving_are_watched(serve_site, site):
    server = serve_site()
    blog = add_app(site, server, template="blog one")
    edit_template(server, blog / "templates" / "blog" / "index.html", "one", "two", "/blog/")


def test_a_template_directory_added_to_the_settings_is_watched(serve_site, site):
    server = serve_site()
    templates = site / "templates"
    templates.mkdir()
    (templates / "page.html").write_text("page one")
    replace(
        site / "mysite" / "views.py",
        "from django.http import HttpResponse",
        "from django.http import HttpResponse\nfrom django.shortcuts import render",
    )
    with (site / "mysite" / "views.py").open("a") as views:
        views.write("\n\ndef page(request):\n    return render(request, 'page.html')\n")
    replace(
        site / "mysite" / "urls.py",
        "urlpatterns = [",
        "urlpatterns = [\n    path('page/', views.page),",
    )
    replace(site / "mysite" / "settings.py", "'DIRS': [],", "'DIRS': [BASE_DIR / 'templates'],")
    poll(server.port, "/page/", lambda r: r.body == b"page one")
    server.wait_for(rf"{WATCHING}.*recursively.*{re.escape(str(templates))}")
    edit_template(server, templates / "page.html", "one", "two", "/page/")


def test_system_checks_run_at_every_reload(serve_site, site):
    server = serve_site()
    server.wait_for("System check identified no issues")
    mark = server.mark()
    add_app(
        site, server, "class Item(models.Model):\n    price = models.DecimalField(max_digits=5)\n"
    )
    # Django 6.1 reports the same mistake as fields.E135, worded differently.
    server.wait_for(
        r"blog\.Item\.price: \(fields\.E13[05]\) Decimal.*decimal_places",
        start=mark,
    )


def test_unapplied_migrations_are_announced_at_each_reload(serve_site, site):
    server = serve_site()
    blog = add_app(
        site, server, "class Post(models.Model):\n    title = models.CharField(max_length=20)\n"
    )
    mark = server.mark()
    manage(site, "makemigrations", "blog", "-v0")
    assert (blog / "migrations" / "0001_initial.py").is_file()
    server.wait_for(r"You have 1 unapplied migration\(s\).*: blog\.", start=mark)


def test_the_banner_says_that_debug_turned_reloading_on(serve_site):
    server = serve_site()
    assert "DEBUG is on, so prodserve reloads on every change" in server.output
    assert "--reload is for development" not in server.output  # no --reload was given


def reload_once(server: Server, site: Path) -> int:
    """A start, then an edit served by the next server, its checks done: the output index where
    the edit was made."""
    server.wait_for("System check identified no issues")
    mark = server.mark()
    replace(site / "mysite" / "views.py", "Hello, site", "Hello, edited")
    poll(server.port, "/hello/", lambda r: r.body == b"Hello, edited")
    server.wait_for("System check identified no issues", start=mark)
    return mark


def test_what_is_watched_is_said_once_at_start_after_the_checks(serve_site, site):
    """Not once before and once after the first server's report; and not inside the checks'
    block, which the report precedes."""
    server = serve_site()
    start = server.lines[: reload_once(server, site)]
    watching = [i for i, line in enumerate(start) if WATCHING in line]
    assert len(watching) == 1, start
    assert "System check identified" in "\n".join(start[: watching[0]])


def test_a_server_is_said_ready_once(serve_site, site):
    """The supervisor's line, with the time since the change; the server's own is a debug line."""
    server = serve_site()
    first = server.wait_for(r"Server process (\d+) ready in \d+ ms").group(1)
    reload_once(server, site)
    ready = rf"Server process {first} ready|\[{first}\] \[\w+\] Ready"
    assert len([line for line in server.lines if re.search(ready, line)]) == 1, server.output
