"""Peak memory of a process tree, sampled from a process of its own.

`python -m benchmarks.sampler PID INTERVAL` prints ``ready``, then samples the proportional set
size of PID and all its descendants every INTERVAL seconds until its stdin closes, and prints
the largest anonymous and file-backed PSS it saw (bytes, one line ``anon file``).

Sampling from outside keeps the measurement off the measured process: reading
``/proc/*/smaps_rollup`` makes the kernel walk every mapping of every process in the tree (1 to
5 ms per sample here, more with large mapped segments), and done in a thread of the measured
process it would also take that process's GIL from the work being timed.
"""

from __future__ import annotations

import os
import select
import sys


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree_pss(pid: int | None = None, exclude: int | None = None) -> tuple[int, int]:
    """(anonymous, file-backed) proportional set size of `pid` and all its descendants, bytes.

    PSS splits shared pages fairly between processes, so forked workers are not double counted.
    File-backed pages (memory-mapped segments, libraries) are page cache the kernel can reclaim;
    anonymous pages (heap, Arrow buffers, decompressed data) are what a process really holds.
    `exclude` (and its descendants) is left out: the sampler itself, a child of what it samples.
    """
    pid = os.getpid() if pid is None else pid
    anon = file = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        if p == exclude:
            continue
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                        anon += int(line.split()[1]) * 1024
                    elif line.startswith("Pss_File:"):
                        file += int(line.split()[1]) * 1024
        except OSError:
            continue
        todo += _children(p)
    return anon, file


def main(argv: list[str]) -> None:
    pid, interval = int(argv[0]), float(argv[1])
    anon = file = 0
    print("ready", flush=True)
    while True:
        a, f = tree_pss(pid, exclude=os.getpid())
        anon, file = max(anon, a), max(file, f)
        if select.select([sys.stdin], [], [], interval)[0]:
            if not sys.stdin.readline():  # closed: the run is over
                break
    a, f = tree_pss(pid, exclude=os.getpid())
    print(max(anon, a), max(file, f), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
