"""Waiting for several slow things at once: each remote call, probe or lookup mostly waits."""

import threading
import time


def within(call, items, budget_s):
    """Runs ``call(item)`` for every item at the same time (daemon threads) and waits at most
    ``budget_s`` for all of them together; returns {item: result or the exception it raised} for
    those that ended in time. One still running is not waited for (its answer may land later)."""
    answers = {}

    def run(item):
        try:
            answers[item] = call(item)
        except Exception as err:  # the caller decides what an exception means
            answers[item] = err

    threads = [threading.Thread(target=run, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return dict(answers)
