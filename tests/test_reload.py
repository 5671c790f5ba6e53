"""--reload: real supervisor processes serving a temporary copy of the test project, edited live."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import django
import pytest

from django_prodserve.management.commands.prodserve import Command
from django_prodserve.server.watch import FileWatch
from tests.client import Response, get
from tests.conftest import LISTENING, Server, children_of, pid_alive, wait_until

WARM = "Warm standby"
WATCHING = "Watching for file changes"


@pytest.fixture
def serve(start_copy):
    """start_copy(...), then wait until the supervisor watches: the server may be up before it
    (it is launched first), and an edit before then would go unseen."""

    def start(*args: str, **kwargs) -> Server:
        server = start_copy(*args, **kwargs)
        server.wait_for(WATCHING)
        return server

    return start


def poll(port: int, path: str, done: Callable[[Response], bool], timeout: float = 10.0):
    """GET `path` until `done(response)`; returns (response, seconds it took)."""
    start = time.monotonic()
    response = None
    while time.monotonic() - start < timeout:
        response = get(port, path)
        if done(response):
            return response, time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"GET {path}: still {response} after {timeout}s")


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def descendants(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *descendants(child)]
    return found


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_an_edited_view_is_served_after_the_save(serve, project_copy, start):
    server = serve("--reload", "--reload-start", start, "--log-level", "debug")
    if start == "warm":
        server.wait_for(WARM)
    assert get(server.port, "/hello/").body == b"Hello, world!"
    replace(project_copy / "demo" / "views.py", "Hello, world!", "Hello, reloaded!")
    _, latency = poll(server.port, "/hello/", lambda r: r.body == b"Hello, reloaded!")
    print(f"\n{start} start: save → new response in {latency * 1000:.0f} ms")
    assert latency < 5
    assert "WARNING: --reload is for development" in server.output
    assert "reloader pid" in server.output


def test_a_view_edit_is_served_by_the_standby_that_set_the_project_up(serve, project_copy):
    server = serve("--reload", "--log-level", "debug")
    deep = server.wait_for(rf"{WARM} (\d+): the project set up").group(1)
    replace(project_copy / "demo" / "views.py", "Hello, world!", "Hello, deep!")
    poll(server.port, "/hello/", lambda r: r.body == b"Hello, deep!")
    server.wait_for(rf"Server process {deep} ready")


def test_a_models_edit_is_served_by_a_standby_that_had_not_imported_it(serve, project_copy):
    server = serve("--reload", "--log-level", "debug")
    deep = server.wait_for(rf"{WARM} (\d+): the project set up").group(1)
    shallow = server.wait_for(rf"{WARM} (\d+): Django imported").group(1)
    models = project_copy / "demo" / "models.py"
    models.write_text(models.read_text() + "\nGREETING = 'Hello, models!'\n")
    replace(project_copy / "demo" / "views.py", 'b"Hello, world!"', "GREETING.encode()")
    replace(
        project_copy / "demo" / "views.py",
        "from .models import Item",
        "from .models import GREETING, Item",
    )
    poll(server.port, "/hello/", lambda r: r.body == b"Hello, models!")
    server.wait_for(rf"Standby {deep} had imported a changed file")
    server.wait_for(rf"Server process {shallow} ready")


def test_a_file_an_import_looked_for_makes_the_standby_stale(serve, project_copy):
    """settings.py's `from .local import *` found nothing when the standby set up; local.py
    appearing changes the settings, so that standby must not serve."""
    settings = project_copy / "testproject" / "settings.py"
    settings.write_text(
        settings.read_text() + "\ntry:\n    from .local import *\nexcept ImportError:\n    pass\n"
    )
    server = serve("--reload", "--log-level", "debug")
    deep = server.wait_for(rf"{WARM} (\d+): the project set up").group(1)
    assert get(server.port, "/hello/").status == 200
    (project_copy / "testproject" / "local.py").write_text("ALLOWED_HOSTS = ['example.com']\n")
    poll(server.port, "/hello/", lambda r: r.status == 400)  # Host: localhost is no longer allowed
    server.wait_for(rf"Standby {deep} had imported a changed file")


def test_no_request_fails_while_the_server_restarts(serve, project_copy):
    server = serve("--reload")
    bodies: list[bytes] = []
    errors: list[Exception] = []
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            try:
                response = get(server.port, "/hello/")
                assert response.status == 200, response
                bodies.append(response.body)
            except Exception as exc:
                errors.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        current = b"Hello, world!"
        for text in (b"Hello, one!", b"Hello, number two!", b"Hello, three!"):
            replace(project_copy / "demo" / "views.py", current.decode(), text.decode())
            current = text
            assert wait_until(lambda new=text: bodies[-1:] == [new], 10)
    finally:
        done.set()
        thread.join()
    assert not errors
    assert set(bodies) <= {
        b"Hello, world!",
        b"Hello, one!",
        b"Hello, number two!",
        b"Hello, three!",
    }


@pytest.mark.parametrize(
    "file, broken, error",
    [
        ("demo/views.py", "def broken(:", b"SyntaxError"),
        ("demo/views.py", "undefined_name", b"NameError"),
        ("demo/models.py", "undefined_name", b"NameError"),
        ("testproject/settings.py", "x = (", b"SyntaxError"),
    ],
)
def test_a_broken_module_shows_its_error_until_a_save_fixes_it(
    serve, project_copy, file, broken, error
):
    server = serve("--reload")
    module = project_copy / file
    original = module.read_text()
    module.write_text(f"{original}\n{broken}\n")
    response, _ = poll(server.port, "/hello/", lambda r: r.status == 500)
    assert error in response.body
    assert server.proc.poll() is None
    module.write_text(original)
    replace(project_copy / "demo" / "views.py", "Hello, world!", "Hello, fixed!")
    poll(server.port, "/hello/", lambda r: r.body == b"Hello, fixed!")


def test_a_project_broken_at_launch_still_starts_and_recovers(serve, project_copy):
    views = project_copy / "demo" / "views.py"
    original = views.read_text()
    views.write_text(f"{original}\ndef broken(:\n")
    server = serve("--reload", ready=False)
    port = int(server.wait_for(LISTENING.pattern).group(3))
    server.wait_for("could not start the project")
    response, _ = poll(port, "/hello/", lambda r: r.status == 500)
    assert b"SyntaxError" in response.body
    views.write_text(original.replace("Hello, world!", "Hello, at last!"))
    poll(port, "/hello/", lambda r: r.body == b"Hello, at last!")


def test_without_debug_the_error_page_tells_nothing(serve, project_copy):
    server = serve("--reload", env={"TESTPROJECT_DEBUG": "0"})
    models = project_copy / "demo" / "models.py"
    models.write_text(models.read_text() + "\nundefined_name\n")
    response, _ = poll(server.port, "/hello/", lambda r: r.status == 500)
    assert response.body == b"<h1>Server Error (500)</h1>"


@pytest.mark.parametrize("debug, status", [("1", 200), ("0", 404)])
def test_static_files_are_served_only_with_debug(serve, debug, status):
    server = serve("--reload", env={"TESTPROJECT_DEBUG": debug})
    response = get(server.port, "/static/demo/site.css")
    assert response.status == status


def test_a_template_edit_applies_without_a_restart(serve, project_copy):
    server = serve("--reload")
    assert b"items</h1>" in get(server.port, "/db/").body
    mark = server.mark()
    replace(
        project_copy / "demo" / "templates" / "demo" / "items.html", "items</h1>", "things</h1>"
    )
    poll(server.port, "/db/", lambda r: b"things</h1>" in r.body)
    server.wait_for(r"items\.html changed, applied without a restart", start=mark)
    assert not re.search(r"items\.html changed, reloading", server.output)


def test_editor_droppings_and_bytecode_do_not_restart(serve, project_copy):
    server = serve("--reload")
    demo = project_copy / "demo"
    droppings = [".views.py.swp", ".views.py.swx", "views.py~", ".#views.py", "#views.py#", "4913"]
    droppings += [".DS_Store", "views.py___jb_tmp___", "__pycache__/junk.cpython-311.pyc"]
    mark = server.mark()
    (demo / "__pycache__").mkdir(exist_ok=True)
    for name in droppings:
        (demo / name).write_text("junk")
    time.sleep(0.3)  # several watch batches: the droppings are judged on their own
    (demo / "views.py").write_text((demo / "views.py").read_text() + "\n# an edit\n")
    server.wait_for(r"/demo/views\.py changed, reloading", start=mark)
    changed = [line for line in server.lines[mark:] if " changed, " in line]
    assert not [line for line in changed if any(name in line for name in droppings)]


def test_extra_files_and_globs_are_watched(serve, project_copy):
    (project_copy / "conf").mkdir()
    (project_copy / "notes.txt").write_text("notes")
    server = serve(
        "--reload", "--reload-extra-file", "notes.txt", "--reload-extra-file", "conf/*.ini"
    )
    mark = server.mark()
    (project_copy / "notes.txt").write_text("new notes")
    server.wait_for(r"/notes\.txt changed, reloading", start=mark)
    (project_copy / "conf" / "site.ini").write_text("[site]")
    server.wait_for(r"/conf/site\.ini changed, reloading", start=mark)
    mark = server.mark()
    (project_copy / "conf" / "site.txt").write_text("not watched")
    (project_copy / "notes.txt").write_text("newer notes")
    server.wait_for(r"/notes\.txt changed, reloading", start=mark)
    assert "site.txt" not in server.output


def test_requests_are_logged_like_runserver(serve):
    server = serve("--reload")
    get(server.port, "/hello/")
    get(server.port, "/nowhere/")
    server.wait_for(r'^\[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] "GET /hello/ HTTP/1\.1" 200 13$')
    server.wait_for(r'^\[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] "GET /nowhere/ HTTP/1\.1" 404 \d+$')


def test_the_warning_can_be_hidden_like_runserver_s(serve):
    server = serve("--reload", env={"DJANGO_RUNSERVER_HIDE_WARNING": "true"})
    assert "WARNING: --reload" not in server.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_supervisor_stops_every_process(serve, sig):
    server = serve("--reload", "--log-level", "debug")
    server.wait_for(f"{WARM} .*the project set up")
    tree = descendants(server.proc.pid)
    # The server's master and 2 workers, the two standbys (, its checker); without fork
    # (tests/nofork) the server is one process and its checker a thread.
    assert len(tree) >= (5 if hasattr(os, "fork") else 3)
    server.signal(sig)
    assert server.wait_exit(10) == 0
    assert wait_until(lambda: not any(map(pid_alive, tree)), 5)


def test_a_killed_supervisor_takes_its_servers_along(serve):
    """Linux only (PR_SET_PDEATHSIG): a SIGKILLed supervisor must not leave a server running."""
    server = serve("--reload", "--log-level", "debug")
    server.wait_for(WARM)
    tree = descendants(server.proc.pid)
    server.proc.kill()
    server.wait_exit(5)
    assert wait_until(lambda: not any(map(pid_alive, tree)), 5)


def test_noreload_wins_over_the_environment(start_copy):
    server = start_copy("--noreload", env={"PRODSERVE_RELOAD": "1"})
    assert "master pid" in server.output


def test_runserver_flags_set_their_settings():
    parser = Command().create_parser("manage.py", "prodserve")
    options = parser.parse_args(["--reload", "--noreload", "--threads", "4", "--nothreading"])
    assert options.setting_reload is False
    assert options.setting_threads == 1
    options = parser.parse_args(["--reload-extra-file", "a.yaml", "--reload-extra-file", "b/*"])
    assert options.setting_reload_extra_files == ["a.yaml", "b/*"]


def test_the_next_standby_imports_the_libraries_except_what_apps_discover_after_the_project():
    """FileWatch.libraries: `<app>.admin` of a library after the project's `demo.admin` is left
    to be imported after the word, so registries still see the apps in INSTALLED_APPS order."""
    library = Path(django.__file__).parent
    modules = [
        ["django.contrib.admin", str(library / "contrib" / "admin" / "__init__.py")],
        ["demo.admin", "/srv/project/demo/admin.py"],
        ["django.contrib.auth.admin", str(library / "contrib" / "auth" / "admin.py")],
        ["django.contrib.auth.forms", str(library / "contrib" / "auth" / "forms.py")],
    ]
    apps = {"demo", "django.contrib.admin", "django.contrib.auth"}
    assert FileWatch(()).libraries(modules, apps) == [
        "django.contrib.admin",
        "django.contrib.auth.forms",
    ]
