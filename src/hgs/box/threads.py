"""Waiting for several slow things at once: each remote call, probe or lookup mostly waits.

``side_by_side``: every answer, in order (a stage of host shutdowns); ``within``: those that
came within one joint budget (lookups, a batch's shells, the self-test's hosts)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor


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


def side_by_side(call, items):
    """Runs ``call(item)`` for every item at the same time (threads: each is a remote call that
    mostly waits); returns the results in order."""
    items = list(items)
    if len(items) <= 1:
        return [call(item) for item in items]
    results, futures = [None] * len(items), {}
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        for index, item in enumerate(items):
            try:
                futures[index] = pool.submit(call, item)
            except RuntimeError:  # no thread to be had (a box short of resources): it runs here, in turn
                results[index] = call(item)
        for index, future in futures.items():
            results[index] = future.result()
    return results
