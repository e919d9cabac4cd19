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
    with pytest.raises(OSError, match="storage path is writable"):
        writer.submit(print)
