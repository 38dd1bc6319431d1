"""When one of two gloo processes dies or hangs, the other leaves its collective with an error
within the process-group timeout instead of blocking forever (the default is 30 minutes)."""

import os
import socket
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from infossl.runtime import strategy_for

TIMEOUT_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peer(rank: int, port: int, fault: str, queue) -> None:
    """Rank 0 blocks in a second all_reduce; rank 1 dies (os._exit) or hangs instead."""
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, 2, rank == 0, timeout=timedelta(seconds=30))
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=2, timeout=timedelta(seconds=TIMEOUT_S)
    )
    dist.all_reduce(torch.ones(1))  # both alive and connected
    if rank == 1:
        if fault == "dies":
            os._exit(1)  # no cleanup: as a SIGKILL or an OOM kill would leave it
        time.sleep(TIMEOUT_S + 2)  # alive but never joins the next collective
        os._exit(0)
    started = time.monotonic()
    try:
        dist.all_reduce(torch.ones(1))
        queue.put(("returned", time.monotonic() - started, ""))
    except Exception as err:  # noqa: BLE001 - whatever gloo raises is what we measure
        queue.put((type(err).__name__, time.monotonic() - started, str(err)[:300]))
    queue.close()
    queue.join_thread()  # flush the result before the hard exit below
    os._exit(0)  # destroy_process_group would wait for the dead peer


def _blocked_rank0_outcome(fault: str) -> tuple[str, float, str]:
    ctx = mp.get_context("fork")  # spawn re-imports torch: ~20 s on 2 busy cores
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_peer, args=(r, port, fault, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        return queue.get(timeout=60)
    finally:
        for p in procs:
            p.join(timeout=TIMEOUT_S + 10)
            if p.is_alive():
                p.kill()


def test_peer_process_death_fails_the_blocked_collective_within_a_second():
    kind, waited, message = _blocked_rank0_outcome("dies")
    print(f"peer died: rank 0 got {kind} after {waited:.3f} s: {message[:120]}")
    assert kind != "returned"
    assert waited < 1.0  # the closed socket is noticed at once, well before the timeout


def test_hung_peer_fails_the_blocked_collective_at_the_timeout():
    kind, waited, message = _blocked_rank0_outcome("hangs")
    print(f"peer hung: rank 0 got {kind} after {waited:.3f} s: {message[:120]}")
    assert kind != "returned"
    assert "timed out" in message.lower() or "timeout" in message.lower()
    assert TIMEOUT_S - 0.5 <= waited <= TIMEOUT_S + 3.0


def test_the_training_strategy_carries_the_timeout():
    assert strategy_for(2, 1, 12.5)._timeout == timedelta(seconds=12.5)
    assert strategy_for(1, 1, 12.5) == "auto"  # one process: no process group at all
