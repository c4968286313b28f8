"""Imported by multiprocessing's fork server (see lazyspec.parallel): loads torch and runs a tiny
spec through the engine, so that every worker forked from the server starts warm. Importing it
anywhere else does the same work: nothing else imports it."""

from __future__ import annotations

from lazyspec.parallel import warm_up

warm_up()
