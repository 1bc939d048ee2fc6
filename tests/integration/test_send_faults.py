"""`mailroom send --store/--resume` under faults: a damaged journal, a
store that is missing, read-only or locked, a full disk under the journal,
a list changed between a crash and its resume, an unknown campaign.

Each fault has its own test with the exact exit status (sysexits: 65
EX_DATAERR, 66 EX_NOINPUT, 73 EX_CANTCREAT, 75 EX_TEMPFAIL, 77 EX_NOPERM)
and the message people see.  The store stays byte for byte as it was
whenever the command refuses to go on.
"""
import collections
import hashlib
import os
import pathlib
import re
import signal
import sqlite3
import struct
import subprocess
import time

import pytest

from peers import (JOURNAL_HDR_SIZE, JOURNAL_REC_SIZE, journal_segments,
                   journal_written_records, read_accounting, wait_until,
                   write_list)

TEMPLATE = ("From: Campaign <news@sender.test>\n"
            "To: {{name}} <{{email}}>\n"
            "Subject: Hello {{name}}\n"
            "\n"
            "Dear {{name}}, this message is for {{email}}.\n")


class Campaign:
    """A recorded campaign's files in tmp_path: list, template, store,
    accounting; argv for its first run and for --resume."""

    def __init__(self, tmp_path, n, route, name="camp", opts=(),
                 domains=10):
        self.dir = pathlib.Path(tmp_path)
        self.name = name
        self.emails = [f"r{i:05d}@d{i % domains}.test" for i in range(n)]
        self.list = write_list(self.dir / "list.csv", ["email", "name"],
                               [[e, f"Name {i:05d}"]
                                for i, e in enumerate(self.emails)])
        self.template = self.dir / "template.eml"
        self.template.write_text(TEMPLATE)
        self.store = self.dir / "store.db"
        self.acct = self.dir / "accounting.csv"
        self.journal_dir = pathlib.Path(str(self.store) + ".journal")
        self.route = route
        self.opts = list(opts)

    def args(self, name=None, *opts):
        a = ["send", "--store", self.store, "--campaign", name or self.name,
             "--template", self.template, "--list", self.list,
             "--route", f"*={self.route}", "--accounting", self.acct,
             "--no-progress", "-o", "general.hostname=mailroom.test"]
        for o in self.opts + list(opts):
            a += ["-o", o]
        return [str(x) for x in a]

    def resume(self, name=None, *opts):
        a = ["send", "--store", self.store, "--resume", name or self.name,
             "--no-progress"]
        for o in opts:
            a += ["-o", o]
        return [str(x) for x in a]


def _summary(stdout, key):
    m = re.search(rf"(?m)^{re.escape(key)}: (\d+)", stdout)
    assert m, f"no '{key}:' in\n{stdout[-2000:]}"
    return int(m.group(1))


def _store_bytes(store):
    """{file name: sha256} of the store and its write-ahead log.  (Not of
    the -shm index: every reader, even one that changes nothing, marks
    its place there.)"""
    out = {}
    for suffix in ("", "-wal"):
        p = pathlib.Path(str(store) + suffix)
        # An empty log is what SQLite makes on opening a WAL store: it
        # holds nothing, so it changes nothing.
        if p.exists() and (suffix == "" or p.stat().st_size > 0):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _campaign_rows(store):
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return sorted(con.execute(
            "SELECT name, stage, state, delivered FROM campaigns"))
    finally:
        con.close()


def _paused_campaign(camp, sink, mailroom_bg, stop_at=20):
    """Run camp against a slow sink and stop it with SIGINT: a campaign
    recorded in the store, paused in the middle (exit 75)."""
    run = mailroom_bg(camp.args(), name="paused")
    assert run.wait_for(lambda: sink.total >= stop_at, timeout=30), run
    run.signal(signal.SIGINT)
    assert run.wait(timeout=30) == 75, run
    assert sink.wait_idle()
    return run


def _killed_mid_run(camp, sink, mailroom_bg, at):
    """Run camp and kill -9 it once the sink has counted `at` messages."""
    run = mailroom_bg(camp.args(), name="killed")
    assert run.wait_for(lambda: sink.total >= at, timeout=60,
                        interval=0.002), run
    assert run.kill() == -signal.SIGKILL, f"ended before the kill\n{run}"
    assert sink.wait_idle()
    return run


def _delivered_per_recipient(acct):
    out = collections.Counter()
    for r in read_accounting(acct):
        assert r["type"] != "bounced", r
        if r["type"] == "delivered":
            out[r["recipient"].lower()] += 1
    return out


def _journal_records(path, count):
    """The first count records of a segment: (seq, rcpt, attempts, type)."""
    data = pathlib.Path(path).read_bytes()
    out = []
    for k in range(count):
        off = JOURNAL_HDR_SIZE + k * JOURNAL_REC_SIZE
        seq, rcpt, attempts, rtype, _pad, _check = struct.unpack_from(
            "<IIHBBI", data, off)
        out.append((seq, rcpt, attempts, rtype))
    return out


JOURNAL_DELIVERED = 2


# ------------------------------------------------------- a damaged journal

@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_journal_tail_warns_and_nobody_is_skipped(
        tmp_path, counting_sink, mailroom_bg, damage):
    sink = counting_sink(host="127.0.0.21")
    n = 20000
    camp = Campaign(tmp_path, n, sink.address)
    # Snapshots every 5 s (the default): at the kill, what the run did is
    # mostly in the journal only.
    _killed_mid_run(camp, sink, mailroom_bg, at=8000)
    received_before = sink.counts

    segs = journal_segments(camp.journal_dir)
    assert segs, f"no journal segment in {camp.journal_dir}"
    jnl = segs[-1]
    written = journal_written_records(jnl)
    assert written >= 1000, (jnl, written)
    mid = written // 2
    # The records before the damage: their final outcomes must be kept.
    kept = {rcpt for _, rcpt, _, t in _journal_records(jnl, mid)
            if t == JOURNAL_DELIVERED}
    assert kept
    if damage == "corrupt":
        # 8 bytes in the middle of record `mid` (its recipient and attempt
        # count), each byte changed.
        off = JOURNAL_HDR_SIZE + mid * JOURNAL_REC_SIZE + 4
        with open(jnl, "r+b") as f:
            f.seek(off)
            old = f.read(8)
            f.seek(off)
            f.write(bytes(b ^ 0xA5 for b in old))
        want = "corrupt record"
    else:
        # Cut record `mid` after 7 of its 16 bytes.
        os.truncate(jnl, JOURNAL_HDR_SIZE + mid * JOURNAL_REC_SIZE + 7)
        want = "truncated"

    resume = mailroom_bg(camp.resume(), name="resume")
    assert resume.wait(timeout=120) == 0, resume
    warning = [line for line in resume.stderr.splitlines()
               if str(jnl) in line]
    assert warning, f"no warning naming {jnl}\n{resume}"
    assert "warning" in warning[0] and want in warning[0], warning
    assert "a damaged journal tail was ignored" in resume.stdout, resume
    assert _summary(resume.stdout, "delivered") == n, resume

    counts = sink.counts
    missing = [e for e in camp.emails if counts.get(e, 0) == 0]
    assert not missing, f"{len(missing)} skipped: {missing[:5]}"
    delivered = _delivered_per_recipient(camp.acct)
    assert set(delivered) == set(camp.emails)
    # Recipients made final by records before the damage are not sent
    # again (the recipient index is the list row: no rejects here).
    resent = sorted(camp.emails[k] for k in kept
                    if counts[camp.emails[k]] != 1)
    assert not resent, (f"{len(resent)} recipients final before the "
                        f"damage were sent again: {resent[:5]}")
    assert all(received_before.get(camp.emails[k]) == 1 for k in kept)


# ------------------------------------------------------------- the store

def test_resume_with_missing_store_exits_66(tmp_path, mailroom_bg):
    store = tmp_path / "nowhere" / "store.db"
    run = mailroom_bg(["send", "--store", str(store), "--resume", "camp",
                       "--no-progress"])
    assert run.wait(timeout=30) == 66, run
    assert f"store {store} does not exist" in run.stderr, run
    assert not store.exists() and not store.parent.exists()


def test_resume_of_unknown_campaign_exits_66(tmp_path, counting_sink,
                                             mailroom_bg):
    sink = counting_sink(host="127.0.0.22")
    camp = Campaign(tmp_path, 10, sink.address)
    assert mailroom_bg(camp.args(), name="first").wait(timeout=30) == 0
    before = _store_bytes(camp.store)
    run = mailroom_bg(camp.resume("nosuch"), name="unknown")
    assert run.wait(timeout=30) == 66, run
    assert f"no campaign nosuch in store {camp.store}" in run.stderr, run
    assert "in-flight-at-crash" not in run.stdout
    assert _store_bytes(camp.store) == before
    assert sink.total == 10


def _immutable(path, on):
    r = subprocess.run(["chattr", "+i" if on else "-i", str(path)],
                       capture_output=True, text=True, timeout=30)
    return r.returncode == 0, r.stderr.strip()


@pytest.mark.parametrize("how", ["resume", "new-campaign"])
def test_read_only_store_is_refused_and_left_unchanged(
        tmp_path, counting_sink, mailroom_bg, how):
    # The tests run as root, and root ignores permission bits
    # (CAP_DAC_OVERRIDE): chmod 0444 would not stop the write.  What
    # stops root is the immutable attribute, `chattr +i`, which ext4
    # supports (tmp_path is under /tmp, on the root ext4 filesystem
    # here).  A tmpfs remounted read-only would work too, but needs a
    # mount; chattr is simpler and only touches the one file.  Where
    # chattr is not supported the test is skipped.
    sink = counting_sink(host="127.0.0.23", delay=0.02)
    camp = Campaign(tmp_path, 200, sink.address)
    _paused_campaign(camp, sink, mailroom_bg)
    sink.delay = 0.0
    total = sink.total
    rows = _campaign_rows(camp.store)
    before = _store_bytes(camp.store)
    ok, why = _immutable(camp.store, True)
    if not ok:
        pytest.skip(f"chattr +i not supported here: {why}")
    try:
        args = camp.resume() if how == "resume" else camp.args("other")
        run = mailroom_bg(args, name="ro")
        rc = run.wait(timeout=30)
    finally:
        _immutable(camp.store, False)
    assert rc in (73, 77), run
    assert f"store {camp.store} is read-only" in run.stderr, run
    assert "in-flight-at-crash" not in run.stdout
    assert _store_bytes(camp.store) == before
    assert _campaign_rows(camp.store) == rows
    assert sink.total == total


@pytest.mark.parametrize("how", ["resume", "new-campaign"])
def test_store_locked_by_another_process_exits_75(
        tmp_path, counting_sink, mailroom_bg, how):
    sink = counting_sink(host="127.0.0.24", delay=0.02)
    camp = Campaign(tmp_path, 200, sink.address)
    _paused_campaign(camp, sink, mailroom_bg)
    sink.delay = 0.0
    total = sink.total
    rows = _campaign_rows(camp.store)
    con = sqlite3.connect(str(camp.store), isolation_level=None, timeout=0)
    try:
        con.execute("BEGIN IMMEDIATE")     # the write lock, held
        before = _store_bytes(camp.store)
        args = camp.resume() if how == "resume" else camp.args("other")
        run = mailroom_bg(args + ["-o", "store.busy_timeout=200ms"],
                          name="locked")
        rc = run.wait(timeout=30)
        duration = time.monotonic() - run.started
        after = _store_bytes(camp.store)
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert rc == 75, run
    assert str(camp.store) in run.stderr and "locked" in run.stderr, \
        f"the message does not name the store's lock\n{run}"
    assert duration < 10, f"took {duration:.1f} s with a 200 ms busy timeout"
    assert "in-flight-at-crash" not in run.stdout
    assert after == before
    assert _campaign_rows(camp.store) == rows
    assert sink.total == total


# ------------------------------------------------- a full journal filesystem

def test_disk_full_while_journalling_pauses_then_completes(
        tmp_path, tmpfs, counting_sink, mailroom_bg):
    # A 512 KB tmpfs holds the journals, in 64 KB segments; a filler file
    # leaves room for about one segment.  The first segment fits; when it
    # is full the next cannot be allocated, and the engine must pause
    # (start nothing it could not journal) until space returns.
    mnt = tmpfs("512k")
    jdir = mnt / "journal"
    sink = counting_sink(host="127.0.0.25", delay=0.002)
    n = 6000
    camp = Campaign(tmp_path, n, sink.address,
                    opts=[f"recovery.journal_dir={jdir}",
                          "recovery.segment_size=64k"])
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * (free - 96 * 1024))
    st = os.statvfs(mnt)
    left = st.f_bavail * st.f_frsize
    assert 64 * 1024 <= left < 128 * 1024, left

    run = mailroom_bg(camp.args())
    try:
        assert run.wait_for(lambda: "paused" in run.stderr, timeout=60), run
        paused = [line for line in run.stderr.splitlines()
                  if "paused" in line]
        assert "no disk space for the recovery journal" in paused[0], paused
        assert re.search(r"\bwarn", paused[0]), paused
        # Paused: the transactions in flight end, then nothing more starts.
        last = [sink.messages, time.monotonic()]

        def settled():
            m = sink.messages
            if m != last[0]:
                last[:] = [m, time.monotonic()]
            return time.monotonic() - last[1] >= 0.5

        assert wait_until(settled, timeout=15, interval=0.02), \
            "deliveries went on while the journal had no space"
        held = sink.messages
        assert held < n, "the campaign ended before the disk filled"
        assert run.poll() is None, run
        filler.unlink()
        assert run.wait(timeout=60) == 0, run
    finally:
        if run.poll() is None:
            run.kill()
    assert "event=resumed" in run.stderr, run
    assert _summary(run.stdout, "delivered") == n, run
    counts = sink.counts
    delivered = _delivered_per_recipient(camp.acct)
    # Nothing recorded as done that was not done, nobody twice.
    not_received = [e for e in delivered if counts.get(e, 0) == 0]
    assert not not_received, not_received[:5]
    assert set(delivered) == set(camp.emails)
    assert all(c == 1 for c in delivered.values())
    assert all(counts[e] == 1 for e in camp.emails)
    assert not list(jdir.glob("*.jnl")), "journals left after completion"


# --------------------------------- the list changed between crash and resume

@pytest.mark.parametrize("change", ["appended-row", "changed-byte"])
def test_list_changed_between_crash_and_resume_exits_65(
        tmp_path, counting_sink, mailroom_bg, change):
    sink = counting_sink(host="127.0.0.26", delay=0.005)
    camp = Campaign(tmp_path, 3000, sink.address)
    _killed_mid_run(camp, sink, mailroom_bg, at=200)
    total = sink.total
    data = camp.list.read_bytes()
    if change == "appended-row":
        camp.list.write_bytes(data + b"late@d0.test,Late Comer\n")
    else:
        i = data.index(b"Name 00001")       # same size, one byte differs
        camp.list.write_bytes(data[:i] + b"M" + data[i + 1:])
    run = mailroom_bg(camp.resume(), name="changed")
    assert run.wait(timeout=30) == 65, run
    assert f"list {camp.list} changed since campaign camp began" in \
        run.stderr, run
    assert "in-flight-at-crash" not in run.stdout, run
    assert sink.total == total, "a changed list was sent"
    # Still resumable once the list is put back: nothing was given up.
    camp.list.write_bytes(data)
    again = mailroom_bg(camp.resume(), name="restored")
    assert again.wait(timeout=60) == 0, again
    assert set(sink.counts) == set(camp.emails)
