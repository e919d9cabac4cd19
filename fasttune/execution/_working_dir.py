"""A trial's code runs with the worker process inside the trial's directory, as in Ray Tune.

So a trainable's relative writes (``open("model.pt", "wb")``, ``plt.savefig("loss.png")``)
land in its own trial directory, and trials that run side by side never write over each
other's files.  A worker runs many trials one after another (one at a time: it has one
trial thread), so it moves into a trial's directory when the trial's run segment starts
and back to where it was when the segment ends.

``RAY_CHDIR_TO_TRIAL_DIR=0`` keeps the worker's own working directory (for a script that
reads files relative to where it was started).  Before the first move the worker sets
``TUNE_ORIG_WORKING_DIR`` to its working directory, unless it is set already, as Ray Tune
does.

>>> import os, tempfile
>>> trial_dir = os.path.realpath(tempfile.mkdtemp())
>>> before = os.getcwd()
>>> back = enter_trial_dir(trial_dir, None)
>>> os.getcwd() == trial_dir, back == before
(True, True)
>>> leave_trial_dir(back)
>>> os.getcwd() == before
True
>>> enter_trial_dir(trial_dir, "0") is None  # RAY_CHDIR_TO_TRIAL_DIR=0: not moved
True
"""
from __future__ import annotations

import os
import traceback
from typing import Optional

from fasttune.constants import RAY_CHDIR_TO_TRIAL_DIR

ORIG_WORKING_DIR_ENV_VAR = "TUNE_ORIG_WORKING_DIR"


def chdir_to_trial_dir(setting: Optional[str]) -> bool:
    """Whether trials run in their directory, given ``RAY_CHDIR_TO_TRIAL_DIR``'s value
    (None: unset, so they do).  An integer, as Ray Tune reads it: 0 is no, any other is yes.

    >>> chdir_to_trial_dir(None), chdir_to_trial_dir("1"), chdir_to_trial_dir(" 0 ")
    (True, True, False)
    """
    if setting is None:
        return True
    try:
        return bool(int(setting))
    except ValueError:
        raise ValueError(
            f"The environment variable {RAY_CHDIR_TO_TRIAL_DIR}={setting!r} is not an integer: set it to 0 "
            "to run trials in the working directory their worker started in, or to 1 (the default) to run "
            "each trial in its own trial directory.") from None


def make_trial_dir(directory: str) -> None:
    """Make ``directory`` (and its missing parents) unless it is one already; a path there
    that is no directory raises ``FileExistsError``, as ``os.makedirs`` does.

    A new trial's directory costs one ``mkdir`` (its experiment directory exists), not the
    stat, parent stat and mkdir of ``isdir`` and ``os.makedirs``.

    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> make_trial_dir(os.path.join(root, "a", "b")); make_trial_dir(os.path.join(root, "a", "b"))
    >>> os.path.isdir(os.path.join(root, "a", "b"))
    True
    """
    try:
        os.mkdir(directory)
    except FileNotFoundError:  # a parent is missing
        os.makedirs(directory, exist_ok=True)
    except OSError:
        # Some file systems (NFS, FUSE, read-only mounts) answer EACCES or EROFS before EEXIST:
        # an existing directory is fine whatever the error, as for os.makedirs.
        if not os.path.isdir(directory):
            raise


def enter_trial_dir(directory: str, setting: Optional[str]) -> Optional[str]:
    """Move the process into ``directory`` unless ``setting`` (``RAY_CHDIR_TO_TRIAL_DIR``'s
    value) says not to; the directory to go back to, or None when it did not move."""
    here = os.getcwd()
    if ORIG_WORKING_DIR_ENV_VAR not in os.environ:  # one lookup: os.environ.setdefault makes two
        os.environ[ORIG_WORKING_DIR_ENV_VAR] = here
    if not chdir_to_trial_dir(setting):
        return None
    os.chdir(directory)
    return here


def leave_trial_dir(back: Optional[str]) -> None:
    """Go back to ``back``, what :func:`enter_trial_dir` returned (None: nothing to do)."""
    if back is None:
        return
    try:
        os.chdir(back)
    except OSError:  # it was removed meanwhile: the next trial still gets its own directory
        traceback.print_exc()


__all__ = ["ORIG_WORKING_DIR_ENV_VAR", "chdir_to_trial_dir", "enter_trial_dir", "leave_trial_dir", "make_trial_dir"]
