"""Linux as macOS and Windows see it: put this directory first on PYTHONPATH and every interpreter
started with it (the test process, the server, its reload children) lacks the calls those platforms
lack, so the fallbacks they take run here, on every CI run (issue 19, .ci/run).

Removed: fork (Windows has none: prodserve serves in one process), epoll (macOS, the BSDs and Windows:
the selectors loop), pipe2 (macOS, Windows), sendfile (Windows). Signals stay: Linux's are what the
tests drive the server with; so does pread, which --reload's template replay needs (on Windows that
replay is not there yet, see README's platform section).
"""

import os
import select

for module, name in (
    (os, "fork"),
    (os, "forkpty"),
    (os, "register_at_fork"),
    (os, "pipe2"),
    (os, "sendfile"),
    (select, "epoll"),
):
    if hasattr(module, name):
        delattr(module, name)
