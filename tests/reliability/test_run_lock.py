"""RunDirLock: a second holder of one run directory is refused in one line naming the first;
the lock is released on exit, SIGKILL included, so a crashed run never blocks its resume."""

import multiprocessing
import os
import signal

import pytest

from infossl.reliability.run_lock import RunDirLock, RunLockedError


def _hold(run_dir, ready, release):
    RunDirLock(run_dir).acquire()
    ready.set()
    release.wait(30)


def _holder(run_dir):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    process = ctx.Process(target=_hold, args=(run_dir, ready, release))
    process.start()
    assert ready.wait(20)
    return process, release


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    run_dir = tmp_path / "runs" / "infonce-digits"
    process, release = _holder(run_dir)
    try:
        with pytest.raises(RunLockedError) as err:
            RunDirLock(run_dir).acquire()
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(
            f"run directory {run_dir} is in use by another run (pid {process.pid} on "
        )
        assert message.endswith("; wait for it to finish or choose another --name")
    finally:
        release.set()
        process.join(20)
    with RunDirLock(run_dir) as lock:  # free again once the holder exited
        assert lock.held


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    process, _ = _holder(run_dir)
    os.kill(process.pid, signal.SIGKILL)
    process.join(20)
    assert (tmp_path / ".run.lock").is_file()  # the file stays; the lock went with the process
    RunDirLock(run_dir).acquire().release()


def test_two_locks_in_one_process_exclude_each_other_and_release_reopens(tmp_path):
    first = RunDirLock(tmp_path / "run").acquire()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on"):
        RunDirLock(tmp_path / "run").acquire()
    first.release()
    assert not first.held
    RunDirLock(tmp_path / "run").acquire().release()
    assert not (tmp_path / "run").exists()  # locking does not create the run directory
