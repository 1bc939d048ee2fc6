"""`mailroom daemon`: campaigns of the store sent when they are due.

A campaign added for later starts at its time and completes; the daemon
killed with SIGKILL at random moments under a scheduled campaign and
started again each time goes on where the campaign's progress was
recorded (nobody skipped, duplicates only among recipients reported in
flight, one final accounting record each); two daemons on one store never
send one campaign twice; SIGTERM gives a running campaign back as
scheduled; a pause request stops a running campaign and a resume lets the
daemon finish it.

The crash test's seed is printed (`daemon crash test seed: N`);
MAILROOM_CRASH_SEED=N runs the same moments again.
"""
import os
import random
import signal
import subprocess
import time

from peers import (ACCOUNTING_FIELDS, is_inflight_record, read_accounting,
                   wait_until, write_list)

OPTS = ["-o", "general.hostname=mailroom.test",
        "-o", "daemon.poll_interval=200ms",
        "-o", "recovery.snapshot_interval=300ms"]


def _template():
    line = "this line pads the campaign text to a realistic size.\n"
    return ("From: Campaign <news@sender.test>\n"
            "To: {{name}} <{{email}}>\n"
            "Subject: Hello {{name}}\n\n"
            "Dear {{name}},\n" + line * 16)


def _inputs(tmp_path, n, domains=50):
    tmpl = tmp_path / "t.eml"
    tmpl.write_text(_template())
    lst = tmp_path / "l.csv"
    write_list(lst, ("email", "name"),
               [[f"r{i}@d{i % domains}.test", f"N{i}"] for i in range(n)])
    return tmpl, lst


def _run(mailroom, *args, timeout=60):
    return subprocess.run([mailroom] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def _add(mailroom, store, name, tmpl, lst, route, acct, at="now",
         *extra):
    r = _run(mailroom, "campaign", "add", "--store", store, "--name", name,
             "--template", tmpl, "--list", lst, "--route", route,
             "--accounting", acct, "--at", at, *OPTS, *extra)
    assert r.returncode == 0, r.stderr
    return r


def _show(mailroom, store, name):
    r = _run(mailroom, "campaign", "show", name, "--store", store)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if ": " in line and not line.startswith(" "):
            k, v = line.split(": ", 1)
            out.setdefault(k, v)
    return out


class Daemon:
    """A `mailroom daemon` process on a store; stopped by PID."""

    def __init__(self, mailroom, store, log, *extra):
        self.log = open(log, "a")
        self.proc = subprocess.Popen(
            [mailroom, "daemon", "--store", str(store), *OPTS, *extra],
            stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        finally:
            self.log.close()
        return self.proc.returncode


def _done(mailroom, store, name):
    return _show(mailroom, store, name).get("stage") == "complete"


def test_a_campaign_added_for_later_starts_when_due(mailroom, tmp_path,
                                                    aio_peer):
    peer = aio_peer(host="127.0.0.2")
    tmpl, lst = _inputs(tmp_path, 20)
    store, acct = tmp_path / "st.db", tmp_path / "acct.csv"
    _add(mailroom, store, "later", tmpl, lst, f"*={peer.address}", acct,
         "+2s")
    d = Daemon(mailroom, store, tmp_path / "d.log")
    try:
        time.sleep(1.0)
        assert peer.messages == []
        assert _show(mailroom, store, "later")["state"] == "scheduled"
        assert wait_until(lambda: _done(mailroom, store, "later"), 20)
    finally:
        assert d.kill(signal.SIGTERM) == 0
    shown = _show(mailroom, store, "later")
    assert shown["state"] == "done" and shown["delivered"] == "20"
    assert len(peer.messages) == 20
    log = (tmp_path / "d.log").read_text()
    assert "campaign later started" in log
    assert "campaign later complete" in log


def test_daemon_killed_at_random_moments_is_restarted(mailroom, tmp_path,
                                                      counting_sink):
    seed = int(os.environ.get("MAILROOM_CRASH_SEED",
                              str(time.time_ns() % 1_000_000)))
    print(f"daemon crash test seed: {seed}")
    rng = random.Random(seed)
    n = 100_000
    sink = counting_sink(host="127.0.0.3")
    tmpl, lst = _inputs(tmp_path, n)
    store, acct = tmp_path / "st.db", tmp_path / "acct.csv"
    _add(mailroom, store, "big", tmpl, lst, f"*={sink.address}", acct,
         "+1s")
    printed = 0
    for k in range(4):
        d = Daemon(mailroom, store, tmp_path / "d.log")
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0.2, 1.5))	# before or at its start
        else:
            target = sink.total + rng.randint(1, max(1, (n - sink.total)
                                                     // 4))
            wait_until(lambda: sink.total >= target, 60)
        d.kill()
        if _done(mailroom, store, "big"):
            break
    d = Daemon(mailroom, store, tmp_path / "d.log")
    try:
        assert wait_until(lambda: _done(mailroom, store, "big"), 120), \
            (tmp_path / "d.log").read_text()[-3000:]
    finally:
        d.kill(signal.SIGTERM)
    log = (tmp_path / "d.log").read_text()
    printed = sum(int(line.split(":")[1]) for line in log.splitlines()
                  if line.startswith("in-flight-at-crash:"))
    records = read_accounting(acct)
    finals = {}
    inflight = set()
    for rec in records:
        if rec["type"] in ("delivered", "bounced"):
            assert rec["recipient"] not in finals, rec
            finals[rec["recipient"]] = rec["type"]
        elif is_inflight_record(rec):
            inflight.add(rec["recipient"].lower())
    assert len(finals) == n and set(finals.values()) == {"delivered"}
    counts = sink.counts
    assert len(counts) == n, "some recipients were never received"
    dups = {a for a, c in counts.items() if c > 1}
    assert dups <= inflight, f"duplicates not reported: {dups - inflight}"
    assert len(inflight) <= printed
    assert sink.total == n + sum(counts[a] - 1 for a in dups)
    assert _show(mailroom, store, "big")["delivered"] == str(n)


def test_two_daemons_never_send_one_campaign_twice(mailroom, tmp_path,
                                                   counting_sink):
    sink = counting_sink(host="127.0.0.4", delay=0.002)
    tmpl, lst = _inputs(tmp_path, 3000)
    store, acct = tmp_path / "st.db", tmp_path / "acct.csv"
    _add(mailroom, store, "one", tmpl, lst, f"*={sink.address}", acct)
    a = Daemon(mailroom, store, tmp_path / "a.log")
    b = Daemon(mailroom, store, tmp_path / "b.log")
    try:
        assert wait_until(lambda: _done(mailroom, store, "one"), 60)
    finally:
        a.kill(signal.SIGTERM)
        b.kill(signal.SIGTERM)
    started = [f for f in ("a.log", "b.log")
               if "campaign one started" in (tmp_path / f).read_text()]
    assert len(started) == 1
    assert sink.total == 3000 and len(sink.counts) == 3000


def test_sigterm_gives_the_campaign_back_and_nobody_gets_two(
        mailroom, tmp_path, counting_sink):
    sink = counting_sink(host="127.0.0.5", delay=0.01)
    tmpl, lst = _inputs(tmp_path, 2000)
    store, acct = tmp_path / "st.db", tmp_path / "acct.csv"
    _add(mailroom, store, "term", tmpl, lst, f"*={sink.address}", acct)
    d = Daemon(mailroom, store, tmp_path / "d.log")
    assert wait_until(lambda: sink.total >= 200, 30)
    assert d.kill(signal.SIGTERM) == 0
    shown = _show(mailroom, store, "term")
    assert shown["state"] == "scheduled" and shown["stage"] == "delivering"
    sink.delay = 0.0
    d = Daemon(mailroom, store, tmp_path / "d.log")
    try:
        assert wait_until(lambda: _done(mailroom, store, "term"), 60)
    finally:
        d.kill(signal.SIGTERM)
    assert "in-flight-at-crash: 0" in (tmp_path / "d.log").read_text()
    assert sink.total == 2000 and len(sink.counts) == 2000


def test_pause_stops_a_running_campaign_and_resume_finishes_it(
        mailroom, tmp_path, counting_sink):
    sink = counting_sink(host="127.0.0.6", delay=0.01)
    tmpl, lst = _inputs(tmp_path, 2000)
    store, acct = tmp_path / "st.db", tmp_path / "acct.csv"
    _add(mailroom, store, "p", tmpl, lst, f"*={sink.address}", acct)
    d = Daemon(mailroom, store, tmp_path / "d.log")
    try:
        assert wait_until(lambda: sink.total >= 100, 30)
        r = _run(mailroom, "campaign", "pause", "p", "--store", store)
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: _show(mailroom, store, "p")["state"]
                          == "paused" and _show(mailroom, store, "p")
                          .get("owner", "-") in ("-", ""), 30)
        at_pause = sink.total
        time.sleep(1.0)
        assert sink.total - at_pause < 50	# only what was in flight
        sink.delay = 0.0
        r = _run(mailroom, "campaign", "resume", "p", "--store", store)
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: _done(mailroom, store, "p"), 60)
    finally:
        d.kill(signal.SIGTERM)
    assert sink.total == 2000 and len(sink.counts) == 2000
    records = read_accounting(acct)
    assert [r["type"] for r in records].count("delivered") == 2000
    assert list(records[0].keys()) == ACCOUNTING_FIELDS


def test_campaigns_at_once_share_the_destinations_limits(mailroom, tmp_path,
                                                         receivers):
    """One shaper for all the daemon sends: two campaigns running at once
    to one destination with max_connections = 2 open at most 2
    connections between them (each on its own could open 2)."""
    rc = receivers("slow", delay=0.05)
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text(f"[destination {rc.address}]\nmax_connections = 2\n"
                   "adaptive = no\n")
    tmpl, lst = _inputs(tmp_path, 60, domains=3)
    store = tmp_path / "st.db"
    for name in ("first", "second"):
        _add(mailroom, store, name, tmpl, lst, f"*={rc.address}",
             tmp_path / f"{name}.csv", "now", "--config", str(cfg))
    d = Daemon(mailroom, store, tmp_path / "d.log", "--config", str(cfg),
               "-o", "daemon.max_campaigns=2")
    try:
        assert wait_until(lambda: _done(mailroom, store, "first") and
                          _done(mailroom, store, "second"), 90)
    finally:
        assert d.kill(signal.SIGTERM) == 0
    st = rc.stop()
    assert len(st["accepted"]) == 120
    assert st["max_open"] <= 2, st["max_open"]
    log = (tmp_path / "d.log").read_text()
    assert "campaign first started" in log and \
        "campaign second started" in log, log
