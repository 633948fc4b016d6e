"""A worker process entry for tests: the real `worker_main`, except that the N-th
time one of its flows reports a commit that stored children (counted across workers
in the file `$FM_TEST_DIE_COUNTER`, N = `$FM_TEST_DIE_AT`), the process SIGKILLs
itself between that commit and its report — the window a real crash can hit."""

from __future__ import annotations

import os
import signal

from actors import workers


def main(*args) -> None:
    real = workers.WorkerHub.suspended

    def suspended(self, flow_id, seq, kind, info, children, runner=None):
        if children:
            path = os.environ["FM_TEST_DIE_COUNTER"]
            with open(path, "a") as f:
                f.write(flow_id + "\n")
            with open(path) as f:
                n = len(f.read().splitlines())
            if n == int(os.environ["FM_TEST_DIE_AT"]):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(self, flow_id, seq, kind, info, children, runner)

    workers.WorkerHub.suspended = suspended
    workers.worker_main(*args)
