"""The driver's socket to workers on its node (``fasttune/execution/_channel.py``): who may
connect, frames, and a sweep whose polls travel on it, with a worker that dies mid-sweep."""
import os
import signal
import socket
import threading

import msgpack
import pytest

import fasttune as tune
from fasttune.execution import _channel as channel
from fasttune.execution import _worker
from fasttune.execution._worker import TrialWorker
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


def test_a_frame_cut_short_by_a_closing_peer_reads_as_closed():
    left, right = socket.socketpair()
    left.sendall((100).to_bytes(4, "little") + b"only ten b")
    left.close()
    assert channel.read_frame(right) is None
    right.close()


def test_serve_answers_each_frame_then_closes_when_poll_raises():
    left, right = socket.socketpair()

    def poll(commands):
        if commands == b"boom":
            raise ValueError("bad commands")
        return commands.upper()

    thread = channel.serve(right, poll)
    channel.send_frame(left, b"abc")
    assert channel.read_frame(left) == b"ABC"
    channel.send_frame(left, b"boom")
    assert channel.read_frame(left) is None
    thread.join()
    left.close()


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
    channel.send_frame(sock, b"\xc1 not msgpack")
    assert channel.read_frame(sock) is None
    with pytest.raises(msgpack.FormatError):
        worker.poll(b"")
    assert worker._channel_failure is None  # raised once: later polls are ordinary ones
    sock.close()


class _EveryResult(FIFOScheduler):
    """FIFO that asks to decide at every result: one poll per result."""

    def decision_points(self, trial):
        return DecisionPoints.every_result()


def _counting_frames(monkeypatch):
    counts = {"replies": 0, "closed": 0}
    read_frame = channel.read_frame

    def counted(sock):
        try:
            frame = read_frame(sock)
        except OSError:  # reset: the dead worker had not read the driver's last frame
            frame = None
        counts["replies" if frame is not None else "closed"] += 1
        return frame

    monkeypatch.setattr(channel, "read_frame", counted)
    return counts


def _history_fn(config):
    for i in range(1, 21):
        tune.report({"score": config["x"] * i})


@pytest.mark.parametrize("mode", ["socket", "ray"])
def test_a_sweep_runs_the_same_with_polls_on_the_socket_or_on_ray(ray_session, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("FASTTUNE_WORKER_CHANNEL", mode)
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
        assert counts == {"replies": 0, "closed": 0}


def test_a_worker_killed_while_its_poll_is_on_the_socket_fails_its_trial_once(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTTUNE_WORKER_CHANNEL", "socket")
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
    # The death was seen as the socket closing; the retry started over (no checkpoint).
    assert counts["closed"] >= 1, counts
    assert list(result.metrics_dataframe["training_iteration"])[-10:] == list(range(1, 11))
