"""What `--reload` watches and which changes count (FileWatch), and the watchfiles threads that
feed the supervisor batches of changed paths (Watcher).

Kept apart from reloader.py's child lifecycle: the supervisor only asks "which paths changed, and
do they need a restart", never how they were found.
"""

from __future__ import annotations

import contextlib
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

import watchfiles
from django.apps import apps
from django.conf import settings
from django.utils import autoreload
from django.utils.autoreload import autoreload_started, file_changed

from .portable import wake_pipe

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


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _has_magic(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


class FileWatch:
    """Which directories to watch, and which changes count.

    What Django's autoreloader watches: every module in sys.modules, plus what receivers of
    `autoreload_started` register through `watch_dir()` / `extra_files` — this object is their
    reloader, so template and locale directories come from django.template.autoreload and
    django.utils.translation.reloader (and any third-party receiver) exactly as under runserver.
    This process only ran django.setup() and the checks, never the views, so the project's own
    code is watched as directories: each sys.path entry outside the Python installation (the
    directory of manage.py) for its top-level modules, and recursively every package found there
    and every installed app outside site-packages. Any `.py` file in those counts, new ones too.
    """

    def __init__(self, extra: Iterable[str]) -> None:
        paths = sysconfig.get_paths()
        installation = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
        installation.update(site.getsitepackages(), [site.getusersitepackages()])
        self.installation = {_resolved(path) for path in installation}
        self.module_files = set(autoreload.iter_all_python_module_files())
        self.code_dirs = {
            path for path in map(_resolved, sys.path) if path.is_dir() and not self.installed(path)
        }
        self.code_trees = {
            entry
            for directory in self.code_dirs
            for entry in directory.iterdir()
            if (entry / "__init__.py").is_file()
        }
        self.code_trees.update(
            path
            for path in (_resolved(app.path) for app in apps.get_app_configs())
            if not self.installed(path)
        )
        self.extra_files: set[Path] = set()
        self.extra_globs = [str(Path(p).expanduser().absolute()) for p in extra if _has_magic(p)]
        self.directory_globs: dict[Path, set[str]] = defaultdict(set)
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
        for receiver, result in autoreload_started.send_robust(sender=self):
            if isinstance(result, Exception):
                error_log.warning("autoreload_started receiver %r failed: %s", receiver, result)
        self.extra_files = {_resolved(p) for p in extra if not _has_magic(p)} | {
            _resolved(p) for p in self.extra_files
        }

    def watch_dir(self, path: str | Path, glob: str) -> None:
        """Django's BaseReloader.watch_dir(): also restart (or notify) for `glob` under `path`."""
        self.directory_globs[_resolved(path)].add(glob)

    def installed(self, path: Path) -> bool:
        """In the stdlib or site-packages: a library, not the project."""
        return any(path.is_relative_to(directory) for directory in self.installation)

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
        deep = {path for path in deep if not any(path.is_relative_to(o) for o in deep - {path})}
        flat = {path for path in flat if path.is_dir()}
        flat = {path for path in flat if not any(path.is_relative_to(o) for o in deep)}
        return sorted(deep), sorted(flat)

    def relevant(self, path: Path) -> bool:
        if "__pycache__" in path.parts or IGNORED_NAME.match(path.name):
            return False
        if path in self.module_files or path in self.extra_files:
            return True
        if path.suffix == ".py" and (
            path.parent in self.code_dirs or any(path.is_relative_to(t) for t in self.code_trees)
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
        """Send `file_changed` as runserver does; True when a receiver handled it (no restart)."""
        handled = False
        for receiver, result in file_changed.send_robust(sender=self, file_path=path):
            if isinstance(result, Exception):
                error_log.warning("file_changed receiver %r failed: %s", receiver, result)
            elif result:
                handled = True
        return handled


class Watcher:
    """Two watchfiles threads (recursive and flat directories) that queue each batch of events and
    wake the supervisor's select() through a pipe (`fileno()`)."""

    def __init__(self, deep: list[Path], flat: list[Path]) -> None:
        self.batches: queue.SimpleQueue = queue.SimpleQueue()
        self.quit = threading.Event()
        self.wake_r, self.wake_w = wake_pipe()
        self.threads = [
            threading.Thread(target=self.watch, args=(dirs, recursive), daemon=True)
            for dirs, recursive in ((deep, True), (flat, False))
            if dirs
        ]
        for thread in self.threads:
            thread.start()

    def fileno(self) -> int:
        return self.wake_r

    def watch(self, dirs: list[Path], recursive: bool) -> None:
        """Watcher thread: hand each batch of events to the loop."""
        try:
            for batch in watchfiles.watch(
                *dirs,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self.quit,
                recursive=recursive,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                self.batches.put(batch)
                with contextlib.suppress(BlockingIOError):
                    os.write(self.wake_w, b".")
        except Exception:
            error_log.exception("Watching for file changes failed: changes will not reload")

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
