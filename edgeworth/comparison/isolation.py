"""Running a peer's call under a time limit, so that a hang or a crash stays in its row.

A pure-Python or numpy call cannot be interrupted from another thread, so a
call that may hang runs in a child process that is killed when the limit
passes.  On Linux the child is forked from the caller: every library the caller
has imported is already there, so starting it costs milliseconds, not an
import.  Where fork is unavailable the child is spawned (slower: it imports
what it needs).

The child times the call itself, so the time reported is the library's, not
the fork's.  Warnings the call raises come back with the result.  Where the
platform allows it, the child's address space is capped too, so that a call
that would allocate tens of GiB (PRV at an extreme eps) fails with a
MemoryError in its row instead of exhausting a shared machine.
"""
from __future__ import annotations

import multiprocessing as mp
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence


@dataclass(frozen=True)
class Outcome:
    """What one call gave: a result or an error, its wall time and its warnings."""

    result: Any = None
    error: Optional[str] = None
    seconds: Optional[float] = None
    warnings: List[str] = field(default_factory=list)


def call_recorded(fn: Callable, args: Sequence[Any]) -> Outcome:
    """``fn(*args)`` in this process: result or error, wall time, warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a peer's failure belongs in its row
            return Outcome(error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start,
                           warnings=_messages(caught))
        seconds = time.perf_counter() - start
    return Outcome(result=result, seconds=seconds, warnings=_messages(caught))


def _messages(caught) -> List[str]:
    out: List[str] = []
    for w in caught:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in out:
            out.append(msg)
    return out


def _limit_memory(extra_bytes: Optional[int]) -> None:
    """Caps this process's address space at its current size plus ``extra_bytes`` (Linux; a no-op elsewhere)."""
    if not extra_bytes:
        return
    try:
        import resource
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = size + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, size + extra_bytes)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, StopIteration, ValueError):
        pass


def _child(fn, args, conn, memory_limit) -> None:
    try:
        _limit_memory(memory_limit)
        outcome = call_recorded(fn, args)
    except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError raised outside the call's own handler
        outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
    try:
        conn.send(outcome)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result
        conn.send(Outcome(error=f"result could not be sent back: {type(exc).__name__}: {exc}",
                          seconds=outcome.seconds))
    finally:
        conn.close()


def _context():
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def call_with_time_limit(fn: Callable, args: Sequence[Any], seconds: Optional[float],
                         memory_limit: Optional[int] = None) -> Outcome:
    """``fn(*args)`` in a child process killed after ``seconds`` (in this process when None).

    ``memory_limit`` (bytes) caps what the child may allocate beyond what it
    inherits (None: no cap).

    ``fn`` and ``args`` must be picklable where the child is spawned rather
    than forked (module-level functions and plain data are).  A call that runs
    past the limit, or a child that dies (killed, out of memory, a crash in
    native code), gives an :class:`Outcome` whose ``error`` says so.
    """
    if seconds is None:
        return call_recorded(fn, args)
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, tuple(args), sender, memory_limit), daemon=True)
    start = time.perf_counter()
    proc.start()
    sender.close()
    try:
        if receiver.poll(seconds):
            try:
                return receiver.recv()
            except EOFError:
                proc.join(5)
                return Outcome(error=f"the worker process died (exit code {proc.exitcode}; a negative code is the "
                                     "signal that killed it, e.g. -9 when memory ran out)",
                               seconds=time.perf_counter() - start)
        return Outcome(error=f"timed out: no answer within the time limit of {seconds:g} s (the call was killed)",
                       seconds=None)
    finally:
        receiver.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
