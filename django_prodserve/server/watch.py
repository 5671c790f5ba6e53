"""What `--reload` watches and which changes count (FileWatch), and the watchfiles threads that
feed the supervisor batches of changed paths (Watcher).

Kept apart from reloader.py's child lifecycle: the supervisor only asks "which paths changed, and
do they need a restart", never how they were found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
import queue
import re
import site
import sys
import sysconfig
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.utils.autoreload import autoreload_started, file_changed
from watchfiles._rust_notify import RustNotify

from .portable import polling_for, wake_pipe

error_log = logging.getLogger("django_prodserve.error")

#: Never a reason to restart: bytecode, vim's swap files and 4913 probe, backups, emacs lock and
#: auto-save files, JetBrains safe-write temporaries, Finder metadata.
IGNORED_NAME = re.compile(
    "|".join(
        fnmatch.translate(pattern)
        for pattern in (
            "*.py[co]",
            "*~",
            ".#*",
            "#*#",
            "*.sw[a-p]",
            "*.swpx",
            "4913",
            ".DS_Store",
            "*___jb_???___",
        )
    )
)
#: watchfiles: a batch of events is complete after STEP_MS without a new one (DEBOUNCE_MS at most).
STEP_MS = 20
DEBOUNCE_MS = 400
#: Polling (reload_polling): how often each watched file is looked at.
POLL_MS = 300


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _inside(path: Path, directories: Iterable[Path]) -> bool:
    """Path.is_relative_to() for many directories, as string prefixes (pathlib's is slow)."""
    text = str(path)
    return any(text == str(d) or text.startswith(f"{d}{os.sep}") for d in directories)


def _module_files(files: Iterable[str]) -> set[Path]:
    """Files as Django's autoreloader would name them (resolved), resolving each directory once:
    a big project's modules live in a few hundred directories, not thousands."""
    directories: dict[str, str] = {}
    resolved = set()
    for file in files:
        directory, name = os.path.split(file)
        if directory not in directories:
            directories[directory] = os.path.realpath(directory)
        resolved.add(Path(directories[directory], name))
    return resolved


def _has_magic(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def autoreload_started_for(sender) -> None:
    """Send `autoreload_started` to `sender`, a reloader (`watch_dir()`, `extra_files`), as
    runserver does, with Django's receivers connected for certain."""
    import django.template  # noqa: F401  (connects django.template.autoreload's receivers)

    if settings.USE_I18N:
        # Django connects these on first use of a translation function; make it certain.
        from django.utils.translation.reloader import (
            translation_file_changed,
            watch_for_translation_changes,
        )

        autoreload_started.connect(
            watch_for_translation_changes, dispatch_uid="translation_file_changed"
        )
        file_changed.connect(translation_file_changed, dispatch_uid="translation_file_changed")
    for receiver, result in autoreload_started.send_robust(sender=sender):
        if isinstance(result, Exception):
            error_log.warning("autoreload_started receiver %r failed: %s", receiver, result)


@dataclasses.dataclass(eq=False)  # a signal's sender: hashable, by identity
class Registrations:
    """What `autoreload_started`'s receivers register in a server's checker, with the server's
    settings and apps (reload_child._check), and its template directories: the supervisor ran the
    receivers once, with the settings of the start (FileWatch.learn)."""

    dirs: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    extra_files: set[str] = dataclasses.field(default_factory=set)
    templates: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.extra_files = set(self.extra_files)  # a list in the report

    @classmethod
    def here(cls) -> Registrations:
        found = cls()
        autoreload_started_for(found)
        try:
            from django.template.autoreload import get_template_directories

            found.templates = sorted(str(_resolved(d)) for d in get_template_directories())
        except Exception:  # broken TEMPLATES: its receiver's failure is logged, checks say why
            pass
        found.extra_files = {str(_resolved(path)) for path in found.extra_files}
        return found

    def report(self) -> dict:
        """As JSON has it; Registrations(**report) on the other side."""
        return {**dataclasses.asdict(self), "extra_files": sorted(self.extra_files)}

    def watch_dir(self, path: str | Path, glob: str) -> None:
        """BaseReloader.watch_dir(), noted (resolved here: a relative path is this cwd's)."""
        self.dirs.append((str(_resolved(path)), glob))


class FileWatch:
    """Which directories to watch, and which changes count.

    What Django's autoreloader watches: every module in sys.modules, plus what receivers of
    `autoreload_started` register through `watch_dir()` / `extra_files` — this object is their
    reloader, so template and locale directories come from django.template.autoreload and
    django.utils.translation.reloader (and any third-party receiver) exactly as under runserver.
    This process only ran django.setup(), never the views, so the project's own code is watched
    as directories: each sys.path entry outside the Python installation (the directory of
    manage.py) for its top-level modules, and recursively every package found there and every
    installed app outside site-packages. Any `.py` file in those counts, new ones too. Each server
    reports what it loaded and what the receivers register with its settings (`learn`), so a new
    app or package, its templates, a new TEMPLATES DIRS entry are watched from the next reload on.
    """

    def __init__(self, extra: Iterable[str]) -> None:
        paths = sysconfig.get_paths()
        installation = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
        installation.update(site.getsitepackages(), [site.getusersitepackages()])
        self.installation = {_resolved(path) for path in installation}
        self.module_files = _module_files(
            file
            for module in list(sys.modules.values())
            if isinstance(file := getattr(module, "__file__", None), str)
        )
        self.code_dirs = {
            path for path in map(_resolved, sys.path) if path.is_dir() and not self.installed(path)
        }
        self.code_trees: set[Path] = set()
        self.add_code(app.path for app in apps.get_app_configs())
        self.extra_files: set[Path] = set()
        self.extra_globs = [str(Path(p).expanduser().absolute()) for p in extra if _has_magic(p)]
        self.directory_globs: dict[Path, set[str]] = defaultdict(set)
        #: The newest server's template directories (its settings and apps), once it reported.
        self.template_dirs: set[Path] = set()
        autoreload_started_for(self)
        self.extra_files = {_resolved(p) for p in extra if not _has_magic(p)} | {
            _resolved(p) for p in self.extra_files
        }

    def add_code(self, app_paths: Iterable[str]) -> None:
        """Watch recursively the packages at the top of the project and these apps' directories
        (those outside the Python installation)."""
        self.code_trees.update(
            entry
            for directory in self.code_dirs
            for entry in directory.iterdir()
            if (entry / "__init__.py").is_file()
        )
        self.code_trees.update(
            path for path in map(_resolved, app_paths) if not self.installed(path)
        )

    def learn(
        self,
        module_files: Iterable[str],
        app_paths: Iterable[str],
        registered: Registrations | None = None,
    ) -> None:
        """A server reported what it loaded, which this process never imports (the views, an app
        added to INSTALLED_APPS since the start), and what `autoreload_started` registers with its
        settings and apps (`registered`: a new app's templates and locale, a new TEMPLATES DIRS
        entry): that counts too."""
        self.module_files.update(_module_files(module_files))
        self.add_code(app_paths)
        if registered is not None:
            for directory, glob in registered.dirs:
                self.watch_dir(directory, glob)
            self.extra_files.update(map(_resolved, registered.extra_files))
            self.template_dirs = set(map(_resolved, registered.templates))

    def libraries(self, modules: list[list[str]], apps: list[str]) -> list[str]:
        """The names, in import order, of the modules a server loaded from the Python installation:
        what the next deep standby imports before the edit is known (reload_child._set_up).

        Left out: `<app>.<name>` when a project's `<app>.<name>` was imported before it (`apps`:
        the installed apps' names). That is how registries import modules, app by app in
        INSTALLED_APPS order (admin, wagtail_hooks): importing the library's first would change
        the order its hooks and registrations run in.
        """
        names, project_leaves = [], set()
        for name, file in modules:
            app, _, leaf = name.rpartition(".")
            if not self.installed(Path(file)):
                if app in apps:
                    project_leaves.add(leaf)
            elif app not in apps or leaf not in project_leaves:
                names.append(name)
        return names

    def watch_dir(self, path: str | Path, glob: str) -> None:
        """Django's BaseReloader.watch_dir(): also restart (or notify) for `glob` under `path`."""
        self.directory_globs[_resolved(path)].add(glob)

    def installed(self, path: Path) -> bool:
        """In the stdlib or site-packages: a library, not the project."""
        return _inside(path, self.installation)

    def roots(self) -> tuple[list[Path], list[Path]]:
        """(recursive, flat) directories to watch: existing, none inside a recursive one."""
        deep = set(self.code_trees)
        flat = set(self.code_dirs) | {path.parent for path in self.module_files | self.extra_files}
        for directory, globs in self.directory_globs.items():
            (deep if any("**" in glob or "/" in glob for glob in globs) else flat).add(directory)
        for pattern in self.extra_globs:
            parts = Path(pattern).parts
            index = next(i for i, part in enumerate(parts) if _has_magic(part))
            recursive = "**" in pattern or index < len(parts) - 1
            (deep if recursive else flat).add(Path(*parts[:index]))
        deep = {path for path in deep if path.is_dir()}
        deep = {path for path in deep if not _inside(path, deep - {path})}
        flat = {path for path in flat if path.is_dir()}
        flat = {path for path in flat if not _inside(path, deep)}
        return sorted(deep), sorted(flat)

    def relevant(self, path: Path) -> bool:
        if "__pycache__" in path.parts or IGNORED_NAME.match(path.name):
            return False
        if path in self.module_files or path in self.extra_files:
            return True
        if path.suffix == ".py" and (
            path.parent in self.code_dirs or _inside(path, self.code_trees)
        ):
            return True
        for directory, globs in self.directory_globs.items():
            if path.is_relative_to(directory):
                relative = str(path.relative_to(directory))
                # fnmatch's * crosses "/", so "**/*.mo" matches at any depth as Path.glob does.
                if any(fnmatch.fnmatchcase(relative, g.removeprefix("**/")) for g in globs):
                    return True
        return any(fnmatch.fnmatchcase(str(path), pattern) for pattern in self.extra_globs)

    def notify(self, path: Path) -> bool:
        """Send `file_changed` as runserver does; True when a receiver handled it (no restart).

        Django's template receiver answers with this process's template directories, those of the
        start; a template in one the newest server has (a new app's, a new DIRS entry) is handled
        too, as runserver's receiver would with the new settings: the servers reset their
        template loaders (reload_child.ChangeReplay), nothing restarts."""
        handled = path.suffix != ".py" and any(d in path.parents for d in self.template_dirs)
        for receiver, result in file_changed.send_robust(sender=self, file_path=path):
            if isinstance(result, Exception):
                error_log.warning("file_changed receiver %r failed: %s", receiver, result)
            elif result:
                handled = True
        return handled


class Watcher:
    """watchfiles notifiers (recursive and flat directories; by system events or polled, see
    portable.polling_for), each drained by a thread that queues its batches of events and wakes the
    supervisor's select() through a pipe (`fileno()`).

    The notifiers are created in `add()`, not in the threads: once it returns the directories are
    watched, so nothing saved after that can go unnoticed. Directories are only ever added — a
    notifier replaced would drop the events it was still gathering.
    """

    def __init__(self, polling: str) -> None:
        self.polling = polling
        self.polled = polling_for(polling)
        self.batches: queue.SimpleQueue = queue.SimpleQueue()
        self.quit = threading.Event()
        self.wake_r, self.wake_w = wake_pipe()
        self.threads: list[threading.Thread] = []
        self.deep: set[Path] = set()
        self.flat: set[Path] = set()

    def add(self, deep: Iterable[Path], flat: Iterable[Path]) -> bool:
        """Also watch these directories (those not watched yet); True when there were such."""
        deep = set(deep) - self.deep
        flat = {path for path in set(flat) - self.flat if not self.covers(path)}
        groups = [
            ([path for path in dirs if self.polled(path) == poll], recursive, poll)
            for dirs, recursive in ((deep, True), (flat, False))
            for poll in (False, True)
        ]
        if polled := [path for dirs, _, poll in groups if poll for path in dirs]:
            error_log.info(
                "Polling for changes in %s (reload_polling=%s)",
                ", ".join(map(str, sorted(polled))),
                self.polling,
            )
        for dirs, recursive, poll in groups:
            if not dirs:
                continue
            try:
                notify = RustNotify(sorted(map(str, dirs)), False, poll, POLL_MS, recursive, True)
            except Exception:  # a directory vanished since roots(): the next change recomputes
                error_log.exception("Watching for file changes failed: changes will not reload")
                continue
            thread = threading.Thread(target=self.watch, args=(notify,), daemon=True)
            thread.start()
            self.threads.append(thread)
        self.deep |= deep
        self.flat |= flat
        return bool(deep or flat)

    def covers(self, path: Path) -> bool:
        return _inside(path, self.deep)

    def fileno(self) -> int:
        return self.wake_r

    def watch(self, notify: RustNotify) -> None:
        """Watcher thread: hand each batch of events to the loop."""
        with notify:
            while True:
                try:
                    batch = notify.watch(DEBOUNCE_MS, STEP_MS, 0, self.quit)
                except Exception:
                    error_log.exception("Watching for file changes failed: changes will not reload")
                    return
                if batch == "stop":
                    return
                if isinstance(batch, set):
                    self.batches.put(batch)
                    with contextlib.suppress(BlockingIOError):
                        os.write(self.wake_w, b".")

    def changed(self) -> set[Path]:
        """Every path in the batches queued since the last call."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass
        paths: set[Path] = set()
        with contextlib.suppress(queue.Empty):
            while True:
                paths.update(Path(path) for _, path in self.batches.get_nowait())
        return paths

    def stop(self) -> None:
        """Ask the threads to stop (they notice within STEP_MS)."""
        self.quit.set()

    def close(self) -> None:
        self.quit.set()
        for thread in self.threads:
            thread.join(1.0)
        os.close(self.wake_r)
        os.close(self.wake_w)
