"""The driver's socket to workers on its node (``fasttune/execution/_channel.py``): who may
connect, frames, and a sweep whose polls travel on it, with a worker that dies mid-sweep."""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import msgpack
import pytest

import fasttune as tune
from fasttune_testing import commands, install, spec, wait_until
from fasttune.execution import _channel as channel
from fasttune.execution import _worker
from fasttune.execution import _protocol as protocol
from fasttune.execution._worker import TrialWorker
from fasttune.execution.ray_trial_executor import RayTrialExecutor
from fasttune.schedulers import FIFOScheduler
from fasttune.schedulers.trial_scheduler import DecisionPoints


@pytest.fixture
def listener():
    listener = channel.ChannelListener()
    yield listener
    listener.close()


def test_the_socket_is_in_a_directory_only_its_user_can_enter(listener):
    assert os.stat(os.path.dirname(listener.path)).st_mode & 0o777 == 0o700


def test_a_peer_without_a_secret_it_was_given_is_turned_away(listener):
    listener.secret_for(3)
    stranger = channel.connect(listener.path, b"x" * 32)
    assert listener.accept() == []
    assert channel.read_frame(stranger) is None  # closed by the driver
    stranger.close()


def test_a_secret_admits_one_connection_and_names_its_worker(listener):
    secret = listener.secret_for(3)
    first = channel.connect(listener.path, secret)
    [(slot, accepted)] = listener.accept()
    assert slot == 3
    second = channel.connect(listener.path, secret)
    assert listener.accept() == []
    assert channel.read_frame(second) is None
    for sock in (first, accepted, second):
        sock.close()


def test_a_forgotten_slot_is_turned_away(listener):
    secret = listener.secret_for(5)
    listener.forget(5)
    late = channel.connect(listener.path, secret)
    assert listener.accept() == []
    late.close()


def test_frames_arrive_whole_whatever_their_size():
    left, right = socket.socketpair()
    big = bytes(range(256)) * (3 << 12)  # 3 MiB: more than one recv
    writer = threading.Thread(target=lambda: [channel.send_frame(left, data) for data in (big, b"", b"z")])
    writer.start()
    assert [channel.read_frame(right) for _ in range(3)] == [big, b"", b"z"]
    writer.join()
    left.close()
    assert channel.read_frame(right) is None
    right.close()


def test_frames_read_ahead_arrive_whole_and_in_order_however_the_bytes_are_cut():
    """With a pending buffer each recv takes what has arrived: frames that came together,
    a header cut in two, a frame larger than one read ahead, and a close mid-frame."""
    big = bytes(range(256)) * ((channel._READ_AHEAD >> 8) + 3)  # past one read ahead
    frames = [b"a", b"", b"bc" * 10, big, b"z"]
    stream = b"".join(len(f).to_bytes(4, "little") + f for f in frames) + (9).to_bytes(4, "little") + b"cut"
    cuts = [0, 9, 11, 30, 31, 4000, len(stream) - 5, len(stream)]  # two frames in one piece, a header in two

    class ArrivingSocket:
        """What each recv finds: the next piece, as much of it as is asked for."""

        def __init__(self):
            self.pieces = [stream[a:b] for a, b in zip(cuts, cuts[1:])]
            self.asked = []

        def recv(self, size):
            self.asked.append(size)
            if not self.pieces:
                return b""  # closed
            piece = self.pieces.pop(0)
            if len(piece) > size:
                self.pieces.insert(0, piece[size:])
            return piece[:size]

    sock, pending = ArrivingSocket(), bytearray()
    assert [channel.read_frame(sock, pending) for _ in frames] == frames
    assert channel.read_frame(sock, pending) is None  # closed mid-frame
    assert channel._HEADER.size not in sock.asked  # no read of a header by itself
    whole = ArrivingSocket()
    whole.pieces = [len(b"poll").to_bytes(4, "little") + b"poll"]
    assert channel.read_frame(whole, bytearray()) == b"poll" and len(whole.asked) == 1  # one recv a whole frame


def test_a_frame_cut_short_by_a_closing_peer_reads_as_closed():
    left, right = socket.socketpair()
    left.sendall((100).to_bytes(4, "little") + b"only ten b")
    left.close()
    assert channel.read_frame(right) is None
    right.close()


def test_serve_applies_each_frame_in_order_answers_each_poll_and_closes_when_a_poll_fails():
    left, right = socket.socketpair()
    applied, failures, release = [], [], threading.Event()
    interrupted = threading.Event()

    polls = []

    def take_commands(commands):
        applied.append(("poll", commands))
        polls.append(commands)

    def next_reply():
        if polls[-1] == b"boom":
            raise ValueError("bad reply")
        if polls[-1] == b"wait":
            release.wait()  # a long poll, as when the worker has nothing to say yet
        return polls[-1].upper()

    def interrupt(commands):
        applied.append(("interrupt", commands))
        interrupted.set()

    thread = channel.serve(right, take_commands, next_reply, interrupt, failures.append)
    channel.send_frame(left, channel.POLL + b"abc")
    assert channel.read_frame(left) == b"ABC"
    channel.send_frame(left, channel.POLL + b"wait")
    channel.send_frame(left, channel.INTERRUPT + b"stop it")  # while the poll waits for news
    assert interrupted.wait(30)
    # The poll's commands were applied before the interrupt that came after them.
    assert applied == [("poll", b"abc"), ("poll", b"wait"), ("interrupt", b"stop it")]
    release.set()
    assert channel.read_frame(left) == b"WAIT"
    channel.send_frame(left, channel.POLL + b"boom")
    assert channel.read_frame(left) is None
    assert [type(f) for f in failures] == [ValueError]
    thread.join()
    left.close()


def test_a_frame_reader_returns_a_frame_only_once_it_is_whole_and_never_waits():
    left, right = socket.socketpair()
    reader = channel.FrameReader()
    assert reader.read(right) is None  # nothing yet: returns at once
    frame = b"x" * 300_000  # more than a socket buffer: arrives in pieces
    writer = threading.Thread(target=channel.send_frame, args=(left, frame))
    writer.start()
    got = None
    while got is None:
        got = reader.read(right)
    writer.join()
    assert got == frame
    left.close()
    with pytest.raises(EOFError):
        reader.read(right)
    right.close()


def test_a_frame_reader_splits_what_came_at_once_into_its_frames():
    def header(size):  # a frame's length prefix
        return struct.pack("<I", size)

    left, right = socket.socketpair()
    reader = channel.FrameReader()
    left.sendall(header(3) + b"one")  # one whole frame: as nearly every reply comes
    assert reader.read(right) == b"one" and not reader.holds_more
    left.sendall(header(0))  # an empty frame is a frame
    assert reader.read(right) == b"" and not reader.holds_more
    left.sendall(header(3) + b"two" + header(5) + b"thr")  # a frame and a part
    assert reader.read(right) == b"two" and reader.holds_more
    assert reader.read(right) is None
    left.sendall(b"ee" + header(4) + b"four")
    assert reader.read(right) == b"three" and reader.holds_more
    assert reader.read(right) == b"four" and not reader.holds_more
    left.sendall(b"\x07\x00")  # less than a header
    assert reader.read(right) is None and reader.holds_more
    left.close()
    right.close()


def test_an_interrupt_is_sent_whole_or_not_at_all():
    left, right = socket.socketpair()
    left.setblocking(False)
    while True:  # fill the socket's buffer: the peer reads nothing
        try:
            left.send(b"f" * 65536)
        except BlockingIOError:
            break
    assert channel.send_small_frame(left, channel.INTERRUPT + b"stop") is False
    left.close()
    right.close()
    a, b = socket.socketpair()
    assert channel.send_small_frame(a, channel.INTERRUPT + b"stop") is True
    assert channel.read_frame(b) == channel.INTERRUPT + b"stop"
    a.close()
    b.close()


def test_a_peer_slow_with_its_secret_does_not_hold_the_driver_up(listener):
    secret = listener.secret_for(4)
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(listener.path)
    slow.sendall((32).to_bytes(4, "little") + secret[:10])
    assert listener.accept() == []  # returns at once, the handshake still pending
    slow.sendall(secret[10:])
    [(slot, accepted)] = listener.accept()
    assert slot == 4
    accepted.close()
    slow.close()


def test_a_peer_that_announces_a_secret_of_another_size_is_turned_away(listener):
    listener.secret_for(4)
    liar = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    liar.connect(listener.path)
    liar.sendall((1 << 30).to_bytes(4, "little") + b"y" * 32)
    assert listener.accept() == []
    assert liar.recv(1) == b""  # closed by the driver
    liar.close()


def test_a_listener_that_cannot_bind_leaves_no_directory(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 120)  # too long a path for a Unix socket
    deep.mkdir()
    monkeypatch.setattr(channel.tempfile, "tempdir", str(deep))
    with pytest.raises(OSError):
        channel.ChannelListener()
    assert os.listdir(deep) == []


def test_a_worker_on_another_node_keeps_its_polls_on_ray(listener, monkeypatch):
    monkeypatch.setattr(_worker, "_ray_node_id", lambda: "node-b")
    assert TrialWorker().open_channel(listener.path, listener.secret_for(0), "node-a") is False
    assert listener.accept() == []


def test_a_worker_that_cannot_reach_the_socket_keeps_its_polls_on_ray(listener, monkeypatch):
    monkeypatch.setattr(_worker, "_ray_node_id", lambda: "node-a")
    assert TrialWorker().open_channel(listener.path + "-missing", listener.secret_for(0), "node-a") is False


def test_what_a_poll_on_the_socket_raised_is_raised_by_the_next_poll_on_ray(listener, monkeypatch):
    # The driver falls back to Ray's poll when the socket closes; that poll reports why.
    monkeypatch.setattr(_worker, "_ray_node_id", lambda: "node-a")
    worker = TrialWorker()
    assert worker.open_channel(listener.path, listener.secret_for(0), "node-a") is True
    [(_, sock)] = listener.accept()
    channel.send_frame(sock, channel.POLL + b"\xc1 not msgpack")
    assert channel.read_frame(sock) is None
    with pytest.raises(msgpack.FormatError):
        worker.poll(b"")
    assert worker._channel_failure is None  # raised once: later polls are ordinary ones
    sock.close()


class _EveryResult(FIFOScheduler):
    """FIFO that asks to decide at every result: one poll per result."""

    def decision_points(self, trial):
        return DecisionPoints.every_result()


def _polls_on_the_socket_once_offered(monkeypatch):
    """A worker offered the socket has connected, and the driver taken it, before the poll
    that offered it is sent: its third and later polls go on the socket, however late the
    machine runs its ``open_channel`` (else a slow one keeps a short trial's polls on Ray)."""
    offer = RayTrialExecutor._offer_channel

    def offer_and_take(executor, worker):
        offer(executor, worker)

        def taken():
            executor._accept_workers()  # as the driver's next wait would
            return worker.channel is not None

        if executor._listener is not None:  # (none when the polls stay on Ray)
            wait_until(taken, f"worker {worker.slot} to connect to the socket")

    monkeypatch.setattr(RayTrialExecutor, "_offer_channel", offer_and_take)


def _counting_frames(monkeypatch):
    """Counts the replies the driver read on sockets, the sockets it found closed, the polls
    it sent back to Ray after a close, and the interrupts it sent on sockets."""
    counts = {"replies": 0, "closed": 0, "moved_to_ray": 0, "interrupts": 0}
    read, drop, send_small = channel.FrameReader.read, RayTrialExecutor._drop_channel, channel.send_small_frame

    def counted_read(reader, sock):
        try:
            frame = read(reader, sock)
        except (EOFError, OSError):
            counts["closed"] += 1
            raise
        counts["replies"] += frame is not None
        return frame

    def counted_drop(executor, worker):
        busy = drop(executor, worker)
        counts["moved_to_ray"] += busy and worker.slot in executor._workers  # a live slot: its poll goes to Ray
        return busy

    def counted_send_small(sock, data):
        sent = send_small(sock, data)
        counts["interrupts"] += sent
        return sent

    monkeypatch.setattr(channel.FrameReader, "read", counted_read)
    monkeypatch.setattr(RayTrialExecutor, "_drop_channel", counted_drop)
    monkeypatch.setattr(channel, "send_small_frame", counted_send_small)
    return counts


def _history_fn(config):
    for i in range(1, 21):
        tune.report({"score": config["x"] * i})


def test_a_wait_for_replies_on_sockets_only_is_one_select(ray_session, tmp_path, monkeypatch):
    # A look without waiting before the wait would be a second select in every round trip.
    monkeypatch.setenv("FASTTUNE_WORKER_CHANNEL", "socket")
    _polls_on_the_socket_once_offered(monkeypatch)
    selects_per_wait = []  # for each wait with polls on sockets only: the selects it made
    waiting = [False]
    await_replies, take_sockets = RayTrialExecutor._await_replies, RayTrialExecutor._take_sockets

    def counted_await(executor, timeout):
        waiting[0] = timeout > 0 and bool(executor._busy_channels) and not executor._by_future
        if waiting[0]:
            selects_per_wait.append(0)
        try:
            return await_replies(executor, timeout)
        finally:
            waiting[0] = False

    def counted_take(executor, timeout):
        if waiting[0]:
            selects_per_wait[-1] += 1
        return take_sockets(executor, timeout)

    monkeypatch.setattr(RayTrialExecutor, "_await_replies", counted_await)
    monkeypatch.setattr(RayTrialExecutor, "_take_sockets", counted_take)
    grid = tune.Tuner(
        _history_fn, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=_EveryResult()),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="selects", verbose=0)).fit()
    assert sorted(list(result.metrics_dataframe["score"]) for result in grid) == [
        [x * i for i in range(1, 21)] for x in (1, 2)]
    assert len(selects_per_wait) >= 10 and set(selects_per_wait) == {1}


@pytest.mark.parametrize("mode", ["socket", "ray"])
def test_a_sweep_runs_the_same_with_polls_on_the_socket_or_on_ray(ray_session, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("FASTTUNE_WORKER_CHANNEL", mode)
    _polls_on_the_socket_once_offered(monkeypatch)
    counts = _counting_frames(monkeypatch)
    grid = tune.Tuner(
        _history_fn, param_space={"x": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=_EveryResult()),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="channel", verbose=0)).fit()
    histories = sorted(list(result.metrics_dataframe["score"]) for result in grid)
    assert histories == [[x * i for i in range(1, 21)] for x in (1, 2, 3, 4)]
    if mode == "socket":
        assert counts["replies"] > 0  # 80 decisions: all but a new worker's first polls
    else:
        assert counts == {"replies": 0, "closed": 0, "moved_to_ray": 0, "interrupts": 0}


def test_a_worker_killed_while_its_poll_is_on_the_socket_fails_its_trial_once(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTTUNE_WORKER_CHANNEL", "socket")
    _polls_on_the_socket_once_offered(monkeypatch)
    counts = _counting_frames(monkeypatch)
    marker = tmp_path / "first-attempt-killed"

    def dies_once(config):
        for i in range(1, 11):
            tune.report({"score": i})
            if i == 6 and not marker.exists():
                marker.write_text("x")
                os.kill(os.getpid(), signal.SIGKILL)

    grid = tune.Tuner(
        dies_once, param_space={"x": 1},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=_EveryResult()),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="killed", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1))).fit()
    [result] = list(grid)
    assert marker.exists() and result.error is None and result.metrics["score"] == 10
    # The death was seen as the socket closing while its poll was in flight there: the poll
    # moved to Ray, which said the actor died; the retry started over (no checkpoint).
    assert counts["closed"] >= 1 and counts["moved_to_ray"] == 1, counts
    assert list(result.metrics_dataframe["training_iteration"])[-10:] == list(range(1, 11))


def _forever(config):
    i = 0
    while True:
        i += 1
        tune.report({"i": i})


def _poll_until_ended(sock, trial_id, polls=2000):
    """Polls with no commands until ``trial_id`` ends; its end, or None after ``polls`` polls."""
    for _ in range(polls):
        reply = channel.read_frame(sock)
        assert reply is not None, "the worker closed its socket"
        for event in protocol.decode_events(reply):
            if type(event) is protocol.Ended and event.trial_id == trial_id:
                return event.how
        channel.send_frame(sock, channel.POLL + b"")
    return None


def test_a_stop_sent_right_after_the_start_on_the_socket_stops_that_run(listener, monkeypatch):
    # The start rides on a poll, the stop follows as an interrupt: the worker applies them in
    # the order sent, so the stop is never taken for a trial it does not know yet.  Only the
    # interrupt stops it: the later polls carry no commands.
    monkeypatch.setattr(_worker, "_ray_node_id", lambda: "node-a")
    worker = TrialWorker()
    assert worker.open_channel(listener.path, listener.secret_for(0), "node-a")
    [(_, sock)] = listener.accept()
    sock.settimeout(60)
    channel.send_frame(sock, channel.POLL + commands(install(_forever, "fn")))
    for run in range(20):
        trial_id = f"t{run}"
        channel.send_frame(sock, channel.POLL + commands(["start", spec(trial_id, "fn")]))
        channel.send_frame(sock, channel.INTERRUPT + protocol.encode_commands([protocol.Answer(protocol.STOP, trial_id)]))
        # Stopped once running, or dropped while still queued (the trial thread's timing);
        # an interrupt taken for an unknown trial would leave it running: no end at all.
        assert _poll_until_ended(sock, trial_id) in ("stopped", "dropped")
    sock.close()


def test_workers_on_the_socket_and_on_ray_side_by_side(ray_session, tmp_path, monkeypatch):
    # As on a cluster, where workers on other nodes keep Ray's calls: the loop waits on both.
    monkeypatch.setenv("FASTTUNE_WORKER_CHANNEL", "socket")
    _polls_on_the_socket_once_offered(monkeypatch)
    counts = _counting_frames(monkeypatch)
    offer = RayTrialExecutor._offer_channel

    def offer_to_even_slots(executor, worker):
        # Odd slots keep their polls on Ray; each worker is offered once, as in production.
        if worker.slot % 2 == 0:
            offer(executor, worker)
        else:
            worker.channel_offered = True

    monkeypatch.setattr(RayTrialExecutor, "_offer_channel", offer_to_even_slots)
    grid = tune.Tuner(
        _history_fn, param_space={"x": tune.grid_search([1, 2, 3, 4, 5, 6])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=_EveryResult(), reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="mixed", verbose=0)).fit()
    histories = sorted(list(result.metrics_dataframe["score"]) for result in grid)
    assert histories == [[x * i for i in range(1, 21)] for x in (1, 2, 3, 4, 5, 6)]
    assert counts["replies"] > 0


def test_a_killed_drivers_channel_directory_goes_with_the_next_listener_and_a_live_ones_stays(tmp_path, monkeypatch):
    monkeypatch.setattr(channel.tempfile, "tempdir", str(tmp_path))
    live = channel.ChannelListener()
    killed = subprocess.Popen(
        [sys.executable, "-c", "import sys; from fasttune.execution import _channel as c; "
         f"c.tempfile.tempdir = {str(tmp_path)!r}; listener = c.ChannelListener(); "
         "print(listener.path, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    killed_dir = os.path.dirname(killed.stdout.readline().strip())
    assert os.path.isdir(killed_dir)
    assert channel.remove_abandoned_dirs(str(tmp_path)) == []  # both drivers live
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    killed.stdin.close()
    second = channel.ChannelListener()  # sweeps as it is made
    assert not os.path.exists(killed_dir)
    assert os.path.exists(live.path) and os.path.exists(second.path)
    live.close()
    second.close()
    assert os.listdir(tmp_path) == []  # closed listeners leave nothing either
