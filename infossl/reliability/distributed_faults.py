"""A DDP strategy whose survivors fail within a bounded time when a peer dies or hangs.

What bounds the wait (torch 2.15, pytorch-lightning 2.6):
- ``timeout`` of the process group (``DDPStrategy(timeout=...)`` passes it to
  ``init_process_group``). The defaults are 30 min for gloo and Lightning, 10 min for NCCL: a
  job with a hung peer would hold every GPU that long.
- gloo (CPU): a collective fails at once with "Connection closed by peer" when the peer
  *process* dies (its TCP sockets close); when the peer is alive but stuck, the collective
  fails after ``timeout``. Both measured in tests/reliability/test_distributed_faults.py.
- NCCL (GPU): the watchdog thread checks every collective against ``timeout``;
  ``TORCH_NCCL_ASYNC_ERROR_HANDLING`` (default 3 since torch 2.2: tear the process down without
  aborting the communicator; 1 also aborts it) makes a timed-out or failed collective end the
  process instead of leaving it blocked in a CUDA kernel. Do not set it to 0.
- Lightning's DDP launcher: when a process raises, it SIGKILLs its peers
  (``_SubprocessScriptLauncher.kill``); when a child is SIGKILLed, rank 0 sees the collective
  error above and takes the others down the same way.
The timeout must exceed the longest legitimate gap between two collectives (checkpoint saving
on rank 0 while others wait in a barrier, a slow first data-loader batch, validation on one
rank only); 10 minutes is generous for this project, 60 s is fine for tests.
"""

from __future__ import annotations

from datetime import timedelta

from pytorch_lightning.strategies import DDPStrategy

DEFAULT_TIMEOUT_S = 600.0


def ddp_strategy(timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs) -> DDPStrategy:
    """``DDPStrategy`` with a bounded collective timeout (gloo on CPU, NCCL on GPU)."""
    if timeout_s <= 0:
        raise ValueError(f"trainer.ddp_timeout_s must be positive, got {timeout_s}")
    kwargs.setdefault("find_unused_parameters", False)
    return DDPStrategy(timeout=timedelta(seconds=timeout_s), **kwargs)
