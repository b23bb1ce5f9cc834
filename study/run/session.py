"""Ray for the length of a study: started in-process (or joined: ``ray_address`` / ``RAY_ADDRESS``), SIGTERM
stopping the study as Ctrl-C does, and a watchdog that ends a killed driver's Ray."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from study.spec import StudySpec


@contextmanager
def ray_session(spec: StudySpec) -> Iterator[None]:
    """Start Ray in-process (or join ``ray_address`` / ``RAY_ADDRESS``) for the duration of a study; SIGTERM then
    stops the study as Ctrl-C does (resumable), and a watchdog ends a killed driver's Ray."""
    import ray

    if ray.is_initialized():
        yield
        return
    if spec.cluster_address:  # a cluster's own resources; num_cpus cannot be set when joining
        ray.init(address=spec.cluster_address, logging_level=logging.WARNING)
    else:
        from study.run import watchdog

        # a killed driver cannot shut its local Ray down: the watchdog ends what it leaves behind; it
        # starts first, so a driver killed while Ray starts leaves nothing either
        watchdog.start(os.getpid())
        ray.init(num_cpus=spec.ray_num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if on_main_thread:  # after ray.init, whose own SIGTERM handler aborts the process
        signal.signal(signal.SIGTERM, lambda _sig, _frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
        ray.shutdown()
