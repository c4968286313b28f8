"""Imported by multiprocessing's fork server (see lazyspec.parallel): loads torch and runs a tiny
spec through the engine, so that every worker forked from the server starts warm, and blocks
SIGINT there, so that every worker is born with it blocked. Importing it anywhere else does the
same: nothing else imports it."""

from __future__ import annotations

import signal

from lazyspec.parallel import warm_up

# The fork server is started by exec, which (Python 3.11) clears the signal mask that
# `sigint_blocked` set in the parent; a worker forked from it restores Python's SIGINT handler
# before its own code can ignore it, so a Ctrl-C in that moment would be a KeyboardInterrupt
# traceback of its own. Blocked here, it never is.
if hasattr(signal, "pthread_sigmask"):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
warm_up()
