"""Helper processes (signals, analysis) run below the request path's CPU priority."""

from __future__ import annotations

import os

from distillguard.serve.workers import HELPER_NICENESS, Worker, warm_signal_flush


def test_helper_processes_run_at_a_lower_priority_than_the_server() -> None:
    helper = Worker(enabled=True)
    try:
        niceness = helper.run(os.nice, 0)  # os.nice(0) reads the caller's niceness
        policy = helper.run(os.sched_getscheduler, 0)
    finally:
        helper.stop()
    assert niceness == min(19, os.nice(0) + HELPER_NICENESS)
    assert policy == os.SCHED_IDLE != os.sched_getscheduler(0)  # only on an idle core


def test_disabled_worker_runs_in_the_calling_process() -> None:
    assert Worker(enabled=False).run(os.getpid) == os.getpid()


def test_the_signal_helper_warms_up_with_a_flush_of_one_event() -> None:
    helper = Worker(enabled=True, warm=warm_signal_flush)
    try:
        assert helper.run(warm_signal_flush)  # a contract change that broke it fails here
    finally:
        helper.stop()
