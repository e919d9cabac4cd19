"""Carries the runner's decisions out on Ray: a pool of TrialWorkerActor actors (each a TrialWorker).

Workers are pooled per resource shape and reused across trials.  Each busy worker has
exactly one ``poll`` outstanding (over the driver's socket for a worker on its node, see
``_channel``; else a Ray actor call); the commands the runner queued for it (start a
trial, answer a decision) ride on the next poll, so a worker costs one round trip per
*batch* of results, not per result.  A worker may be handed its next trials before the
current one ends (``depth``), so short trials never leave it idle waiting for the driver.
"""
from __future__ import annotations

import functools
import logging
import os
import selectors
import sys
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from fasttune import _corelib as core
from fasttune.error import TuneError
from fasttune.execution import _channel as channel
from fasttune.execution import _protocol as protocol
from fasttune.execution.placement_groups import PlacementGroupFactory
from fasttune.execution.trial_executor import EVENT_BATCH, EVENT_ERROR, EVENT_START

logger = logging.getLogger(__name__)


_MAX_DEPTH = 64
_RESOURCE_REFRESH_S = 10.0
# A request that does not fit the cluster as last seen looks again this often: a node
# that joined gets work within about this long.
_RESOURCE_RECHECK_S = 1.0
_WAIT_S = 0.5  # longest wait for a worker event before the loop looks around
# Slices of ray.wait while a background suggestion may wake the loop (see _wait_or_wake).
_WAKE_POLL_MIN_S = 0.001
_WAKE_POLL_MAX_S = 0.02
_WAKE_FINE_S = 0.005  # before the slices: the Event is waited on in 0.2 ms steps
_WAKE_FINE_STEP_S = 0.0002
# While polls are in flight both on sockets and on Ray, Ray's are looked at this often at most.
_MIXED_POLL_MAX_S = 0.005


class _Worker:
    __slots__ = ("slot", "actor", "shape", "resources", "future", "assigned", "commands",
                 "trainables", "depth", "placement_group", "replied", "node", "channel", "channel_busy", "reader",
                 "channel_offered")

    def __init__(self, slot: int, actor: Any, shape: Tuple[Any, ...], resources: Dict[str, float],
                 placement_group: Any = None) -> None:
        self.slot = slot
        self.actor = actor
        self.placement_group = placement_group  # reserved bundles for the trainable's own tasks
        self.shape = shape
        self.resources = resources
        self.future: Any = None  # its poll in flight on Ray
        self.channel: Any = None  # its socket to the driver, once connected (see _channel)
        self.channel_busy = False  # a poll in flight on the socket
        self.reader: Any = None  # the socket's FrameReader
        self.channel_offered = False  # asked to connect to the socket (once: see _dispatch)
        self.assigned: Deque[Any] = deque()  # trials handed to it, the running one first
        self.commands: List[Any] = []  # protocol command records for its next poll
        self.trainables: set = set()
        self.depth = 2
        # Until its first reply the actor may still be starting: nothing is queued behind
        # it then, or a trial would wait there while other workers run (and a scheduler
        # that picks the least trained trial could not pick it).
        self.replied = False
        self.node: Optional[str] = None  # its Ray node, once a trial started on it


@functools.lru_cache(maxsize=None)
def _remote_worker_class() -> Any:
    """The Ray actor class of the pooled workers, one per process: Ray exports a class once
    per job, disassembling every method (TrialWorkerActor has the five the driver calls;
    TrialWorker's 32 cost the driver ~20 ms more at a sweep's start)."""
    import ray

    from fasttune.execution._worker import TrialWorkerActor

    return ray.remote(TrialWorkerActor)


class RayTrialExecutor:
    """Starts, stops and feeds trials on a pool of Ray actors: the
    :class:`~fasttune.execution.trial_executor.TrialExecutor` the runner uses by default.

    Example:
        >>> from fasttune.execution import RayTrialExecutor
        >>> executor = RayTrialExecutor(reuse_actors=True)
    """

    def __init__(self, reuse_actors: bool = True, prefetch: bool = True, storage: Any = None) -> None:
        self._reuse_actors = reuse_actors
        self._storage = storage  # an ExperimentStorage: workers upload checkpoints there
        self._prefetch = prefetch
        self._workers: Dict[int, _Worker] = {}
        self._idle: Dict[Tuple[Any, ...], List[int]] = {}
        self._by_future: Dict[Any, int] = {}
        self._replies: Dict[int, Any] = {}
        self._selector = core.EventSelector()
        self._next_slot = 0
        self._committed: Dict[str, float] = {}
        self._total: Dict[str, float] = {}
        self._total_at = 0.0
        self._blobs: Dict[str, Tuple[bytes, bytes]] = {}
        self._trainables: Dict[str, Any] = {}
        self._feasible_shapes: set = set()
        # _fits_letting_idle_go's answers by shape, valid while the pool's resources stay as
        # they were (each change bumps _pool_epoch): asked twice per trial start otherwise.
        self._pool_epoch = 0
        self._fit_answers: Dict[Tuple[Any, ...], Tuple[int, bool]] = {}
        # has_resources_for_trial's answer for start_trial to take, unless the pool changed between:
        # (trial, its shape then, _pool_epoch, queue, the busy worker to queue behind or None
        # for a new worker): the shape, since a trial's resources may change before its start.
        self._placement: Optional[Tuple[Any, Tuple[Any, ...], int, bool, Optional[_Worker]]] = None
        self._sys_path = [os.path.abspath(p or ".") for p in sys.path]
        # Polls of workers on the driver's node go over sockets (see _channel): made with the first worker.
        self._listener: Optional[channel.ChannelListener] = None
        self._sockets: Optional[selectors.BaseSelector] = None
        self._busy_channels = 0
        self._driver_node: Optional[str] = ""  # None: no socket can be made here

    # ---- resources -------------------------------------------------------------------
    def _cluster_total(self) -> Dict[str, float]:
        import ray

        now = time.monotonic()
        if now - self._total_at > _RESOURCE_REFRESH_S or not self._total:
            self._total = {k: float(v) for k, v in ray.cluster_resources().items()}
            self._total_at = now
            self._pool_epoch += 1
        return self._total

    def _fits(self, request: Dict[str, float]) -> bool:
        if self._fits_in(request, self._cluster_total()):
            return True
        if time.monotonic() - self._total_at < _RESOURCE_RECHECK_S:
            return False
        self._total_at = 0.0  # a node may have joined since
        return self._fits_in(request, self._cluster_total())

    def _fits_in(self, request: Dict[str, float], total: Dict[str, float], freed: Optional[Dict[str, float]] = None
                 ) -> bool:
        freed = freed or {}
        return all(self._committed.get(k, 0.0) - freed.get(k, 0.0) + v <= total.get(k, 0.0) + 1e-9
                   for k, v in request.items())

    def cluster_resources(self) -> Dict[str, float]:
        """The Ray cluster's resources in all (free or not), e.g. ``{"CPU": 8.0, "GPU": 2.0}``."""
        return dict(self._cluster_total())

    def _idle_of_other_shapes(self, shape: Tuple[Any, ...]) -> List[_Worker]:
        return [self._workers[slot] for key, slots in self._idle.items() if key != shape for slot in slots]

    def _fits_letting_idle_go(self, pgf: PlacementGroupFactory) -> bool:
        """Whether ``pgf``'s request fits once the idle workers of other shapes are let go
        (a trial whose resources changed needs a worker of its new shape; the pool's idle
        workers of its old one hold what it needs)."""
        shape = pgf.shape_key()
        known = self._fit_answers.get(shape)
        if known is not None and known[0] == self._pool_epoch and (
                time.monotonic() - self._total_at < (_RESOURCE_REFRESH_S if known[1] else _RESOURCE_RECHECK_S)):
            return known[1]  # (until the cluster's resources are due to be looked at again)
        request = pgf.required_resources
        fits = self._fits(request)
        if not fits:
            freed: Dict[str, float] = {}
            for worker in self._idle_of_other_shapes(shape):
                for key, value in worker.resources.items():
                    freed[key] = freed.get(key, 0.0) + value
            fits = bool(freed) and self._fits_in(request, self._cluster_total(), freed)
        self._fit_answers[shape] = (self._pool_epoch, fits)
        return fits

    def _let_idle_go_for(self, pgf: PlacementGroupFactory) -> None:
        """Let idle workers of other shapes go, oldest first, until ``pgf`` fits: only those
        that hold a resource the request still lacks."""
        request = pgf.required_resources
        total = self._cluster_total()
        freed: Dict[str, float] = {}
        leaving: List[_Worker] = []
        for worker in sorted(self._idle_of_other_shapes(pgf.shape_key()), key=lambda w: w.slot):
            if self._fits_in(request, total, freed):
                break
            lacking = {key for key, value in request.items()
                       if self._committed.get(key, 0.0) - freed.get(key, 0.0) + value > total.get(key, 0.0) + 1e-9}
            if not any(worker.resources.get(key, 0.0) > 0 for key in lacking):
                continue
            for key, value in worker.resources.items():
                freed[key] = freed.get(key, 0.0) + value
            leaving.append(worker)
        for worker in leaving:
            self._idle[worker.shape].remove(worker.slot)
            self._pool_epoch += 1
        if leaving:
            self._release_instances(leaving)  # one wait for all their kept instances' cleanup
        for worker in leaving:
            self._kill(worker)

    def await_resources(self, trial: Any) -> Optional[str]:
        """Nothing runs and ``trial`` cannot start: when its request fitted this cluster
        before (nodes have left), wait up to a moment for nodes to join and return why it
        waits (for the caller to tell once); None when it never fitted."""
        if trial.placement_group_factory.shape_key() not in self._feasible_shapes:
            return None
        threading.Event().wait(_RESOURCE_RECHECK_S)  # Ray has no event for a node joining
        self._total_at = 0.0
        total = self._cluster_total()
        return (f"Trial {trial} requests {trial.placement_group_factory.required_resources}, and the Ray "
                f"cluster now has { {k: total.get(k, 0.0) for k in trial.placement_group_factory.required_resources} } "
                "in all (nodes have left); PENDING trials wait until nodes with those resources join.")

    def check_feasible(self, trial: Any) -> None:
        """A trial that can never fit the cluster is an error, not a silent hang."""
        pgf: PlacementGroupFactory = trial.placement_group_factory
        shape = pgf.shape_key()
        if shape in self._feasible_shapes:
            return
        request = pgf.required_resources
        total = self._cluster_total()
        missing = {k: v for k, v in request.items() if v > total.get(k, 0.0) + 1e-9}
        if missing:
            raise TuneError(
                f"Trial {trial} requests {request}, but the Ray cluster has only "
                f"{ {k: total.get(k, 0.0) for k in missing} } in all, so it can never start. "
                "Lower the request (tune.with_resources / resources_per_trial) or add nodes."
            )
        if len(pgf.bundles) > 1:
            import ray

            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            problem = placement_problem(pgf, nodes)
            if problem:
                raise TuneError(
                    f"Trial {trial} requests the placement group {pgf}, which can never be "
                    f"placed on this cluster: {problem}. Change the bundles or the strategy, "
                    "or add nodes."
                )
        self._feasible_shapes.add(shape)

    def has_resources_for_trial(self, trial: Any, queue: bool = True) -> bool:
        """Whether ``trial`` can be handed to a worker now: an idle one, free resources for
        a new one, or (``queue``) a place in a busy worker's queue of next trials."""
        # No earlier answer may outlive this one (an idle worker's or a refusal records none).
        self._placement = None
        pgf: PlacementGroupFactory = trial.placement_group_factory
        shape = pgf.shape_key()
        if self._idle.get(shape):
            return True
        if self._fits_letting_idle_go(pgf):
            self._placement = (trial, shape, self._pool_epoch, queue, None)
            return True
        if not (self._prefetch and queue):
            return False
        busy = self._queue_behind(shape)
        if busy is None:
            return False
        self._placement = (trial, shape, self._pool_epoch, queue, busy)
        return True

    def _queue_behind(self, shape: Tuple[Any, ...], node: Optional[str] = None) -> Optional[_Worker]:
        """The running worker of ``shape`` with the shortest queue that has room (of those,
        one on the Ray node ``node`` if there is one)."""
        best = None
        for worker in self._workers.values():
            if (worker.shape == shape and worker.replied and 0 < len(worker.assigned) < worker.depth
                    and (best is None or len(worker.assigned) < len(best.assigned)
                         or (node is not None and len(worker.assigned) == len(best.assigned)
                             and worker.node == node != best.node))):
                best = worker
        return best

    # ---- trial lifecycle -------------------------------------------------------------
    def register_trainable(self, name: str, trainable: Any) -> None:
        self._trainables[name] = trainable

    def start_trial(self, trial: Any, spec: Dict[str, Any], queue: bool = True) -> int:
        """Hand ``trial`` to a worker of its shape (``queue``: possibly behind the busy
        worker's current trial); returns the worker slot."""
        worker = self._worker_for(trial, queue, spec.get("restore_node"))
        name = spec["trainable"]
        if name not in worker.trainables:
            trainable_blob, envs_blob = self._blob(name)
            worker.commands.append(protocol.LoadTrainable(name, trainable_blob, envs_blob, self._sys_path))
            worker.trainables.add(name)
        if not self._reuse_actors and "reuse_actors" not in spec:
            # True is the worker's default: a pooled sweep's spec goes as it is, uncopied.
            spec = dict(spec, reuse_actors=False)
        worker.commands.append(protocol.StartTrial(spec))
        worker.assigned.append(trial)
        return worker.slot

    def _worker_for(self, trial: Any, queue: bool = True, node: Optional[str] = None) -> _Worker:
        """The worker ``trial`` goes to: an idle one (on the Ray node ``node``, which keeps a copy of
        the checkpoint it resumes from, if one is idle there), else a new one, else a place
        behind a busy one."""
        pgf: PlacementGroupFactory = trial.placement_group_factory
        shape = pgf.shape_key()
        placement, self._placement = self._placement, None
        if placement is not None and placement[0] is trial and placement[1] == shape \
                and placement[2] == self._pool_epoch and placement[3] == queue:
            # has_resources_for_trial placed this trial, of this shape, just now and the pool
            # is as it was then.
            busy = placement[4]
            if busy is None:
                self._let_idle_go_for(pgf)
                return self._create_worker(pgf)
            if (node is None or busy.node == node) and 0 < len(busy.assigned) < busy.depth:
                return busy
        idle = self._idle.get(shape)
        if idle:
            self._pool_epoch += 1
            if node is not None:
                workers = self._workers
                for index in range(len(idle) - 1, -1, -1):
                    if workers[idle[index]].node == node:
                        return workers[idle.pop(index)]
            return self._workers[idle.pop()]
        # A new worker while resources allow (trials run side by side, as many as fit);
        # only then a place behind a busy one.
        if self._prefetch and queue and not self._fits_letting_idle_go(pgf):
            busy = self._queue_behind(shape, node)
            if busy is not None:
                return busy
        self._let_idle_go_for(pgf)
        return self._create_worker(pgf)

    def _create_worker(self, pgf: PlacementGroupFactory) -> _Worker:
        head = pgf.head_bundle
        custom = {k: v for k, v in head.items() if k not in ("CPU", "GPU", "memory")}
        options: Dict[str, Any] = {
            "num_cpus": head.get("CPU", 0.0),
            "num_gpus": head.get("GPU", 0.0),  # Ray sets CUDA_VISIBLE_DEVICES to these GPUs
            "max_concurrency": 4,
            # Workers go to the least loaded nodes, so a sweep uses the whole cluster (and each
            # node's uploads) rather than filling one node first.
            "scheduling_strategy": "SPREAD",
        }
        if custom:
            options["resources"] = custom
        if head.get("memory"):
            options["memory"] = head["memory"]
        group = None
        extra = [bundle for bundle in pgf.bundles[1:] if bundle]
        if extra:
            # Bundles beyond the head are for tasks and actors the trainable starts; a
            # placement group reserves them with the worker, and captures those children.
            # (One bundle needs no group: the actor's own request reserves it, faster.)
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            group = placement_group(([head] if head else []) + extra, strategy=pgf.strategy)
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=group,
                placement_group_bundle_index=0 if head else -1,
                placement_group_capture_child_tasks=True,
            )
        actor = _remote_worker_class().options(**options).remote(self._storage)
        slot = self._next_slot
        self._next_slot += 1
        request = pgf.required_resources
        for key, value in request.items():
            self._committed[key] = self._committed.get(key, 0.0) + value
        self._pool_epoch += 1
        worker = _Worker(slot, actor, pgf.shape_key(), request, group)
        self._workers[slot] = worker
        return worker

    def _offer_channel(self, worker: _Worker) -> None:
        """Ask the worker to connect to the driver's socket (only one on the driver's
        node does); its polls move there once it has (see _dispatch)."""
        worker.channel_offered = True
        if self._listener is None:
            if self._driver_node is None or not channel.channel_wanted():
                return
            try:
                import ray

                self._driver_node = ray.get_runtime_context().get_node_id()
                self._sockets = selectors.DefaultSelector()
                self._listener = channel.ChannelListener(self._sockets)
            except Exception as exc:  # noqa: BLE001 - polls stay on Ray, which always works
                logger.debug("Workers' polls stay on Ray: %s", exc)
                self._driver_node = None
                if self._sockets is not None:
                    self._sockets.close()
                    self._sockets = None
                return
        worker.actor.open_channel.remote(self._listener.path, self._listener.secret_for(worker.slot),
                                         self._driver_node)

    def _drop_channel(self, worker: _Worker) -> bool:
        """Closes the worker's socket; True if a poll was in flight on it."""
        if self._listener is not None:
            self._listener.forget(worker.slot)
        if worker.channel is None:
            return False
        if self._sockets is not None:
            self._sockets.unregister(worker.channel)
        worker.channel.close()
        worker.channel = worker.reader = None
        busy, worker.channel_busy = worker.channel_busy, False
        self._busy_channels -= busy
        return busy

    def _blob(self, name: str) -> Tuple[bytes, bytes]:
        if name not in self._blobs:
            import ray.cloudpickle as cloudpickle

            from fasttune.registry import env_creators

            envs = env_creators()
            self._blobs[name] = (
                cloudpickle.dumps(self._trainables[name]),
                cloudpickle.dumps(envs) if envs else b"",
            )
        return self._blobs[name]

    def send_decision(self, slot: int, trial_id: str, decision: str) -> None:
        """Answer a trial blocked at a decision point ("continue", "stop" or "pause")."""
        worker = self._workers.get(slot)
        if worker is not None:
            worker.commands.append(protocol.Answer(decision, trial_id))

    def reset_trial(self, trial: Any, new_config: Dict[str, Any], new_experiment_tag: str,
                    fields: Optional[Dict[str, Any]] = None) -> bool:
        """Give ``trial``'s live trainable ``new_config`` in place, at the decision point
        it waits at: a class trainable through ``reset_config`` (a fresh instance in the
        same process when that declines), a function trainable by calling it again.
        ``fields`` updates the trial's spec for the new run segment (the checkpoint to
        continue from, its iteration).  True when the reset rides on the worker's next
        poll; False when no worker holds the trial.
        """
        worker = self._holder(trial)
        if worker is None:
            return False
        trial.config = new_config
        trial.experiment_tag = new_experiment_tag
        fields = dict(fields or {}, config=protocol.wire_config(new_config))
        worker.commands.append(protocol.ResetTrial(trial.trial_id, fields))
        return True

    def _holder(self, trial: Any) -> Optional[_Worker]:
        for worker in self._workers.values():
            if trial in worker.assigned:
                return worker
        return None

    def _interrupt(self, trial: Any, how: str, checkpoint: bool = True) -> bool:
        worker = self._holder(trial)
        if worker is None:
            return False
        command = protocol.Answer(how, trial.trial_id, checkpoint)
        payload = protocol.encode_commands([command])
        # On the socket when there is one, so it keeps its order with the polls sent after it.
        if not self._interrupt_on_channel(worker, payload):
            worker.actor.interrupt.remote(payload)
        # The interrupt can reach the worker before the trial's start does (still queued
        # here, or in a poll the worker has not applied yet): the worker then ignores it
        # and would run the trial anyway.  The same command on the next poll comes after
        # the start; once the interrupt did act, the worker ignores the repeat.
        worker.commands.append(command)
        return True

    def _interrupt_on_channel(self, worker: _Worker, payload: bytes) -> bool:
        if worker.channel is None:
            return False
        try:
            return channel.send_small_frame(worker.channel, channel.INTERRUPT + payload)
        except OSError as exc:
            busy = self._drop_channel(worker)
            if isinstance(exc, TimeoutError):
                # Part of a frame went, the worker takes no more: it is ended (a poll it
                # is still in would race the one sent to Ray), and Ray's poll says so.
                self._end_actor(worker)
            if busy:
                self._poll_on_ray(worker, b"")  # closed by the worker: Ray's poll says why
            return False

    def stop_trial(self, trial: Any) -> bool:
        """End a running or queued trial now, without waiting for its next batch; its
        worker confirms with a ``stopped``/``dropped`` event.  False if no worker holds it."""
        return self._interrupt(trial, protocol.STOP)

    def pause_trial(self, trial: Any, should_checkpoint: bool = True) -> bool:
        """Ask the trial's worker to end it as PAUSED; it restarts later from its latest
        checkpoint (a class trainable saves one first unless ``should_checkpoint`` is
        False).  False if no worker holds it."""
        return self._interrupt(trial, protocol.PAUSE, should_checkpoint)

    def trial_ended(self, slot: int, trial: Any) -> None:
        """The worker reported ``trial`` over; return the worker to the pool if it is free."""
        worker = self._workers.get(slot)
        if worker is None:
            return
        try:
            worker.assigned.remove(trial)
        except ValueError:
            pass
        if not worker.assigned:
            # Repeated stops/pauses (see _interrupt) of trials it no longer holds: sent,
            # they would make a poll that nothing answers.
            worker.commands = [c for c in worker.commands
                               if not (isinstance(c, protocol.Answer) and c.how in (protocol.STOP, protocol.PAUSE))]
            if self._reuse_actors:
                self._idle.setdefault(worker.shape, []).append(slot)
                self._pool_epoch += 1
            else:
                self._kill(worker)

    def adapt_depth(self, slot: int, whole_trials_in_reply: int, starved: int = 0) -> None:
        # Trials that start and end within one round trip are short, and a worker that
        # would have yielded a trial to a queued one found none: hand out more ahead.
        worker = self._workers.get(slot)
        if worker is None or not self._prefetch:
            return
        if starved or whole_trials_in_reply >= worker.depth - 1:
            worker.depth = min(_MAX_DEPTH, worker.depth * 2)

    def _dispatch(self) -> None:
        for worker in self._workers.values():
            # A worker whose last reply the runner has not handled yet may be blocked on
            # an answer that handling will produce: poll it only after that.
            if worker.slot in self._replies:
                continue
            if worker.future is None and not worker.channel_busy and (worker.assigned or worker.commands):
                payload = protocol.encode_commands(worker.commands)
                worker.commands = []
                if worker.channel is not None:
                    try:
                        channel.send_frame(worker.channel, channel.POLL + payload, channel.SEND_TIMEOUT_S)
                        worker.channel_busy = True
                        self._busy_channels += 1
                        continue
                    except OSError:
                        # Gone, or taking nothing: Ray's poll says why, or carries on.  (No
                        # poll was in flight, and the worker drops a frame it got only part of.)
                        self._drop_channel(worker)
                elif worker.replied and not worker.channel_offered:
                    # Offered at its second poll, not at its start: a worker whose one short
                    # trial ends within its first poll (reuse_actors=False) never needs it.
                    self._offer_channel(worker)
                self._poll_on_ray(worker, payload)

    def _poll_on_ray(self, worker: _Worker, payload: bytes) -> None:
        worker.future = worker.actor.poll.remote(payload)
        self._by_future[worker.future] = worker.slot

    def get_next_executor_event(self, next_trial_exists: bool,
                                wake: Optional[threading.Event] = None,
                                timeout: Optional[float] = None,
                                wake_poll_s: Optional[float] = None) -> Optional[Tuple[int, int, Any]]:
        """The next event as ``(kind, slot, payload)``: a trial can start (kind EVENT_START),
        a worker's batch arrived (EVENT_BATCH, payload its ``_protocol`` event records) or a worker
        died (EVENT_ERROR, payload the exception).  A startable trial comes first; worker
        events are taken round robin so no worker starves.  Returns None when there is
        nothing to wait for.

        With ``wake`` (set by another thread, e.g. when a searcher's background suggestion
        is ready), the wait also ends, with None, once ``wake`` is set or ``timeout``
        seconds have passed; ``wake_poll_s`` looks at it that often instead of the fine
        polling a fast suggestion needs (for a wake that is rare and not urgent).
        """
        if next_trial_exists:
            self._selector.push(-1, EVENT_START)
        else:
            self._dispatch()
            if not self._replies:
                if wake is None:
                    self._wait()
                elif not wake.is_set():
                    self._wait_or_wake(wake, timeout, wake_poll_s)
        event = self._selector.pop(next_trial_exists)
        if event is None:
            return None
        slot, kind = event
        if kind == EVENT_START:
            return EVENT_START, -1, None
        return kind, slot, self._replies.pop(slot)

    def _wait(self) -> None:
        # Bounded, so the loop sees a Ctrl-C and the time budget while trials are quiet.
        self._await_replies(_WAIT_S)

    def _await_replies(self, timeout: float) -> bool:
        """Waits up to ``timeout`` s for a poll's reply, on a socket or on Ray; takes every
        reply ready by then.  True if one came."""
        # (With polls on sockets only, the wait below takes the replies ready by now at once:
        # a look without waiting first would be a second select per round trip.)
        if self._sockets is not None and (self._by_future or not self._busy_channels) and self._take_sockets(0):
            self._take_ray(0)
            return True
        if not self._busy_channels:
            return self._take_ray(timeout)
        if not self._by_future:
            return self._take_sockets(timeout)
        # Both kinds in flight (a new worker's first two polls, workers on other nodes): the
        # sockets are waited on, Ray's polls looked at between the waits.
        start = time.monotonic()
        while True:
            if self._take_ray(0):
                self._take_sockets(0)
                return True
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                return False
            if self._take_sockets(min(_MIXED_POLL_MAX_S, max(_WAKE_POLL_MIN_S, elapsed / 4), timeout - elapsed)):
                self._take_ray(0)
                return True
            if not self._busy_channels:
                return self._take_ray(max(0.0, timeout - (time.monotonic() - start)))

    def _take_ray(self, timeout: float) -> bool:
        """Takes the Ray replies ready within ``timeout`` s.  True if one came."""
        import ray

        if not self._by_future:
            return False
        futures = list(self._by_future)
        ready, _ = ray.wait(futures, num_returns=1, timeout=timeout)
        if ready:
            self._collect(futures, ready)
        return bool(ready)

    def _take_sockets(self, timeout: float) -> bool:
        """Takes the socket replies ready within ``timeout`` s, and the workers that
        connected.  True if a reply came (or a socket closed: its poll moved to Ray)."""
        came = False
        for key, _ in self._sockets.select(timeout):
            slot = key.data
            if slot is None:
                self._accept_workers()
                continue
            worker = self._workers[slot]
            try:
                raw = worker.reader.read(worker.channel)
            except (EOFError, OSError):
                # Closed: the worker died, or its poll raised.  Ray's poll reports why (or
                # carries on, if the worker lives).
                came = True
                if self._drop_channel(worker):
                    self._poll_on_ray(worker, b"")
                continue
            if raw is None:
                continue  # the rest of the frame is still on its way
            came = True
            if not worker.channel_busy or worker.reader.holds_more:
                # A reply to no poll, or two to one: the worker is broken, as for a malformed reply.
                self._fail_malformed(worker, protocol.MalformedReply("it replied to a poll it was not sent"))
                continue
            worker.channel_busy = False
            self._busy_channels -= 1
            self._take_reply(worker, raw)
        if self._listener.handshaking:
            self._accept_workers()  # a silent peer's handshake expires
        return came

    def _accept_workers(self) -> None:
        for slot, sock in self._listener.accept():
            worker = self._workers.get(slot)
            if worker is None or worker.channel is not None:
                sock.close()
                continue
            worker.channel, worker.reader = sock, channel.FrameReader()
            self._sockets.register(sock, selectors.EVENT_READ, slot)

    def _collect(self, futures: List[Any], ready: List[Any]) -> None:
        """Takes the replies of ``ready`` and of all other ``futures`` ready by now."""
        import ray

        more, _ = ray.wait(futures, num_returns=len(futures), timeout=0)
        for future in set(ready) | set(more):
            slot = self._by_future.pop(future)
            worker = self._workers[slot]
            worker.future = None
            try:
                raw = ray.get(future)
            except Exception as exc:  # noqa: BLE001 - a dead worker is an event, not a crash
                self._replies[slot] = exc
                self._selector.push(slot, EVENT_ERROR)
                continue
            self._take_reply(worker, raw)

    def _take_reply(self, worker: _Worker, raw: bytes) -> None:
        """A poll's reply bytes become the worker's batch event (or its error event)."""
        slot = worker.slot
        worker.replied = True
        try:
            events = protocol.decode_events(raw)
            known = {trial.trial_id for trial in worker.assigned}
            for event in events:
                if event.trial_id not in known:
                    strange = sorted({event.trial_id for event in events} - known)
                    raise protocol.MalformedReply(f"it names trials it was not given: {strange}")
        except protocol.MalformedReply as exc:
            self._fail_malformed(worker, exc)
            return
        for event in events if self._storage is not None else ():
            if type(event) is protocol.Started:
                worker.node = event.node_id or event.node_ip
                break
        self._replies[slot] = events
        self._selector.push(slot, EVENT_BATCH)

    def _fail_malformed(self, worker: _Worker, exc: protocol.MalformedReply) -> None:
        # Only this worker's trials fail (as if it died; it is ended): the other replies of
        # this poll are handled as usual.
        self._replies[worker.slot] = exc
        self._selector.push(worker.slot, EVENT_ERROR)
        self._drop_channel(worker)
        self._end_actor(worker)

    def _wait_or_wake(self, wake: threading.Event, timeout: Optional[float], poll_s: Optional[float] = None) -> None:
        """``_wait``, ending early once ``wake`` is set or ``timeout`` has passed.

        With no worker to wait for, this is a plain ``wake.wait``: the loop wakes the
        moment the suggestion is ready.  Otherwise Ray cannot be woken by a Python Event,
        so for the first 5 ms the workers are checked without blocking between 0.2 ms
        waits on the Event (a fast suggest is picked up at once), then the workers are
        waited on in slices of a quarter of the time waited so far, from 1 ms (Ray's
        timeout resolution) up to 20 ms: a slow suggest costs at most ~50 wake-ups a
        second, never a busy spin.  ``poll_s``: plain slices of that length.
        """
        if not self._by_future and not self._busy_channels:
            wake.wait(timeout)
            return
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        while not wake.is_set():
            now = time.monotonic()
            if poll_s is None and now - start < _WAKE_FINE_S:
                # First few ms (a fast suggest, e.g. TPE's): look at the workers without
                # blocking and wait on the Event itself, which wakes at once when set.
                if self._await_replies(0):
                    return
                wake.wait(_WAKE_FINE_STEP_S)
                continue
            step = poll_s or min(_WAKE_POLL_MAX_S, max(_WAKE_POLL_MIN_S, (now - start) / 4))
            if deadline is not None:
                if now >= deadline:
                    return
                step = min(step, deadline - now)
            if self._await_replies(step):
                return

    def worker_died(self, slot: int) -> List[Any]:
        """Forget a dead worker; returns the trials it held, the running one first."""
        worker = self._workers.pop(slot, None)
        if worker is None:
            return []
        if worker.future is not None:
            self._by_future.pop(worker.future, None)
        self._drop_channel(worker)
        self._end_actor(worker)  # a worker whose poll raised still lives, and holds its resources
        self._total_at = 0.0  # its node may be gone: the cluster's resources are looked at again
        self._selector.discard(slot)
        self._release(worker)
        idle = self._idle.get(worker.shape)
        if idle and slot in idle:
            idle.remove(slot)
            self._pool_epoch += 1
        return list(worker.assigned)

    def _release(self, worker: _Worker) -> None:
        for key, value in worker.resources.items():
            self._committed[key] = self._committed.get(key, 0.0) - value
        self._pool_epoch += 1
        if worker.placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            group, worker.placement_group = worker.placement_group, None
            try:
                remove_placement_group(group)  # also ends tasks the trainable left behind
            except Exception:  # noqa: BLE001 - already gone with its cluster
                pass

    def _kill(self, worker: _Worker) -> None:
        self._workers.pop(worker.slot, None)
        if worker.future is not None:
            self._by_future.pop(worker.future, None)
        self._drop_channel(worker)
        self._release(worker)
        self._end_actor(worker)

    @staticmethod
    def _end_actor(worker: _Worker) -> None:
        import ray

        try:
            ray.kill(worker.actor)
        except Exception:  # noqa: BLE001 - already dead
            pass

    def _release_instances(self, workers: Optional[List[_Worker]] = None) -> None:
        """Let idle workers (``workers``, else all) call ``cleanup()`` on class trainable
        instances they kept for reuse, before they are killed (bounded: a hung cleanup does
        not hang the sweep)."""
        import ray

        if workers is None:
            workers = list(self._workers.values())
        refs = [w.actor.release.remote() for w in workers if not w.assigned]
        if refs:
            try:
                ray.wait(refs, num_returns=len(refs), timeout=30)
            except Exception:  # noqa: BLE001 - a dead worker has nothing to clean up
                pass

    def cleanup(self) -> None:
        try:
            self._release_instances()
            for worker in list(self._workers.values()):
                self._kill(worker)
            self._idle.clear()
            self._pool_epoch += 1
            self._by_future.clear()
            self._replies.clear()
        finally:
            if self._listener is not None:
                for worker in self._workers.values():
                    self._drop_channel(worker)
                self._listener.close()
                self._sockets.close()
                self._listener = self._sockets = None


def placement_problem(pgf: PlacementGroupFactory, nodes: List[Dict[str, float]]) -> Optional[str]:
    """Why ``pgf``'s bundles can never be placed on ``nodes`` (each node's total
    resources), or None when they can.  Checks what totals alone cannot: a bundle larger
    than every node, STRICT_PACK larger than one node, STRICT_SPREAD with too few nodes."""

    def fits(bundle: Dict[str, float], node: Dict[str, float]) -> bool:
        return all(node.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items())

    bundles = [b for b in pgf.bundles if b]
    for bundle in bundles:
        if not any(fits(bundle, node) for node in nodes):
            return f"no node has room for the bundle {bundle} (nodes: {nodes})"
    if pgf.strategy == "STRICT_PACK" and not any(fits(pgf.required_resources, node) for node in nodes):
        return f"STRICT_PACK needs {pgf.required_resources} on one node, and no node has that"
    if pgf.strategy == "STRICT_SPREAD":
        # Each bundle on its own node: a matching of bundles to distinct nodes.
        if not _distinct_nodes_fit(bundles, nodes, fits):
            return f"STRICT_SPREAD needs {len(bundles)} distinct nodes that each hold one bundle"
    return None


def _distinct_nodes_fit(bundles: List[Dict[str, float]], nodes: List[Dict[str, float]], fits: Any) -> bool:
    match: Dict[int, int] = {}  # node -> bundle (augmenting paths; bundles are few)

    def assign(b: int, seen: set) -> bool:
        for n, node in enumerate(nodes):
            if n in seen or not fits(bundles[b], node):
                continue
            seen.add(n)
            if n not in match or assign(match[n], seen):
                match[n] = b
                return True
        return False

    return all(assign(b, set()) for b in range(len(bundles)))
