"""A lowest-priority spinning process beside a measurement (the slow tests, `spec-vlm
bench-link`)."""
from __future__ import annotations

import os
import subprocess
import sys


class BusyCpu:
    """Timing measures the software, not how long an idle CPU takes to wake. On an idle
    virtual machine (CI's), a message to a node waiting on an idle CPU was measured to arrive
    up to ~1.2 s late, which the stop-latency tests would report as the controller's. A
    lowest-priority busy process keeps a CPU from idling; any real work preempts it."""

    def __init__(self):
        self.spinner: subprocess.Popen | None = None

    def keep_awake(self, awake: bool) -> None:
        if awake and self.spinner is None:
            self.spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                            preexec_fn=lambda: os.nice(19))
        elif not awake and self.spinner is not None:
            self.spinner.kill()
            self.spinner.wait()
            self.spinner = None
