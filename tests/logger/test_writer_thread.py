"""WriterThread: calls run in order; a failure surfaces on the next call."""
import threading

import pytest

from fasttune.logger._writer_thread import WriterThread


def test_calls_run_in_order_and_flush_waits_for_them():
    done = []
    writer = WriterThread("test files")
    for i in range(100):
        writer.submit(done.append, i)
    writer.flush()
    assert done == list(range(100))
    writer.close()
    writer.submit(done.append, "after close")  # a new thread starts
    writer.close()
    assert done[-1] == "after close"


def test_a_failed_call_is_raised_naming_what_was_written():
    writer = WriterThread("test files")

    def fail():
        raise PermissionError("read-only")

    writer.submit(fail)
    with pytest.raises(OSError, match=r"Writing test files failed \(PermissionError: read-only\)") as info:
        writer.flush()
    assert isinstance(info.value.__cause__, PermissionError)
    # Told once: winding down after it (a final flush, close) raises nothing more, later
    # calls still run, and the failure stays readable.
    done = []
    writer.submit(done.append, "later")
    writer.close()
    assert done == ["later"]
    assert isinstance(writer.failure, PermissionError)


def test_a_full_disk_says_to_free_space_and_restore():
    import errno

    writer = WriterThread("trial result files")

    def fail():
        raise OSError(errno.ENOSPC, "No space left on device", "/exp/trial/result.json")

    writer.submit(fail)
    writer.submit(len, "later calls run")
    with pytest.raises(OSError, match=r"No space left on device: '/exp/trial/result.json'.*free space.*"
                                      r"Tuner.restore\(\)") as info:
        writer.flush()
    assert info.value.errno == errno.ENOSPC
    writer.check()  # not again
    writer.close()


def test_a_submit_waits_for_a_writer_that_is_behind_instead_of_queueing_without_bound():
    writer = WriterThread("lines", max_pending=3)
    gate, started, ran, returned = threading.Event(), threading.Event(), [], []
    waiting = threading.Event()

    def hold():
        started.set()
        gate.wait()

    real_wait = writer.wait

    def wait():
        # Where the submit that found the queue full stands: the writer holds the first call.
        returned.append(("wait", writer._tasks.qsize()))
        waiting.set()
        real_wait()

    writer.wait = wait

    def submitter():
        writer.submit(hold)
        started.wait()  # the writer runs it: what comes next stays queued
        for i in range(6):
            writer.submit(ran.append, i)
            returned.append(i)

    thread = threading.Thread(target=submitter)
    thread.start()
    waiting.wait()
    assert returned == [0, 1, 2, ("wait", 3)] and ran == []  # the fourth call waits; nothing more queued
    gate.set()
    thread.join()
    del writer.wait
    writer.close()
    assert ran == [0, 1, 2, 3, 4, 5] and returned[4:] == [3, 4, 5]
