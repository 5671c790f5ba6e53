"""Linux as macOS and Windows see it: put this directory first on PYTHONPATH and every interpreter
started with it (the test process, the server, its reload children) lacks the calls those platforms
lack, so the fallbacks they take run here, on every CI run (issue 19, .ci/run).

Removed: fork (Windows has none: prodserve serves in one process), epoll (macOS, the BSDs and Windows:
the selectors loop), poll (Windows: select() it is, in the loop too), pipe2 (macOS, Windows),
sendfile (Windows). Signals stay: Linux's are what the tests drive the server with; so does pread,
which --reload's template replay needs (on Windows that replay is not there yet, see README's
platform section).
"""

import os
import select
import sys

for module, name in (
    (os, "fork"),
    (os, "forkpty"),
    (os, "register_at_fork"),
    (os, "pipe2"),
    (os, "sendfile"),
    (select, "epoll"),
    (select, "poll"),
):
    if hasattr(module, name):
        delattr(module, name)
# shutil chose its sendfile fast path when it was imported, which a .pth file may do before this.
if "shutil" in sys.modules:
    sys.modules["shutil"]._USE_CP_SENDFILE = False
