"""Process trees from /proc, for the fixtures that stop what they started
(dovecot.py) and for the benchmarks that measure it (bench/inject.py,
which puts tests/integration on sys.path as bench/pop3.py does).

  stat_fields(pid)   the fields of /proc/PID/stat after "(comm)": state,
                     parent PID, ... (so field N of proc(5) is [N - 3]);
                     None once pid is gone
  descendants(pid)   PIDs of every descendant of pid, each after its parent
  cmdline(pid)       pid's command line, "" once it is gone
  cpu_seconds(pid)   user + system CPU seconds of pid (and of its tree)

Linux only; plain reads of /proc, nothing is signalled.
"""
import os
import pathlib

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """/proc/PID/stat after "(comm)" (comm may hold spaces and parens),
    split; None once pid is gone."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text() \
            .rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid):
    """PIDs of every descendant of pid (from /proc; zombies included)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = stat_fields(entry)
            if f:   # the state, then the parent PID
                parent[int(entry)] = int(f[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def cmdline(pid):
    """pid's command line ("" once it is gone)."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def cpu_seconds(pid, tree=False):
    """User + system seconds of pid (all its threads) and, with tree, of
    its live descendants and of the children they all reaped."""
    total = 0
    for p in [pid] + (descendants(pid) if tree else []):
        f = stat_fields(p)
        if f:       # utime stime cutime cstime: fields 14-17, here 11-14
            total += sum(int(x) for x in f[11:15 if tree else 13])
    return total / TICK
