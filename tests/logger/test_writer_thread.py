"""WriterThread: calls run in order; a failure surfaces on the next call."""
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
