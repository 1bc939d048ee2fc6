"""`mailroom campaign`: add, list, show, pause, resume, cancel (SPEC D12).

`campaign add` records a campaign for the daemon after checking its
inputs; every TIME form of --at, the default name, absolute paths (the
daemon runs elsewhere) and each refusal are checked, and a refused add
records nothing.  The state rules of pause/resume/cancel, unknown
campaigns and a missing store (66), and a store locked by another process
(75, nothing overwritten) follow.  The daemon is not needed to run a
campaign end to end: `mailroom send --resume NAME` sends a recorded
campaign from another directory, after which `campaign show` reports it
complete with its summary, and it is never sent again.
"""
import calendar
import os
import pathlib
import re
import sqlite3
import subprocess
import time

import pytest

from peers import QUICK_OPTS, TEMPLATE, recipients, write_list

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL = 0, 64, 65, 66, 75

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ADDED = re.compile(r"^campaign (\S+) \(id (\d+)\) scheduled for (\S+)$")


def run(mailroom, *args, cwd=None, timeout=30):
    return subprocess.run([mailroom, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def iso_to_epoch(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def parse_show(stdout):
    """`campaign show` output: {key: value} of the top-level lines, the
    "option:" lines as a list, the summary (indented lines) as a dict."""
    fields, options, summary, in_summary = {}, [], {}, False
    for line in stdout.splitlines():
        if in_summary and line.startswith("  "):
            k, _, v = line.strip().partition(": ")
            summary[k] = v
            continue
        k, _, v = line.partition(": ")
        if line == "summary:":
            in_summary = True
        elif k == "option":
            options.append(v)
        else:
            fields[k] = v
    return fields, options, summary


def parse_list(stdout):
    """`campaign list` output: (header line, [row split on whitespace])."""
    lines = stdout.splitlines()
    return lines[0], [ln.split() for ln in lines[1:]]


def write_inputs(d, rows=None, template=TEMPLATE, header=("email", "name")):
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "template.eml").write_text(template)
    write_list(d / "list.csv", header, rows if rows is not None
               else recipients(3))
    return d / "template.eml", d / "list.csv"


class Store:
    """The campaign and send commands against one store file."""

    def __init__(self, mailroom, path):
        self.mailroom = mailroom
        self.path = pathlib.Path(path)

    def campaign(self, *args, cwd=None, **kw):
        return run(self.mailroom, "campaign", *args, "--store", self.path,
                   cwd=cwd, **kw)

    def add(self, tpl, lst, *args, cwd=None):
        return self.campaign("add", "--template", tpl, "--list", lst,
                             *args, cwd=cwd)

    def show(self, key):
        r = self.campaign("show", key)
        assert r.returncode == 0, r
        return parse_show(r.stdout)

    def send_resume(self, name, cwd, extra=()):
        argv = [self.mailroom, "send", "--store", str(self.path),
                "--resume", name, "--no-progress",
                "-o", "general.hostname=mailroom.test", *extra]
        for k, v in QUICK_OPTS.items():
            argv += ["-o", f"{k}={v}"]
        pathlib.Path(cwd).mkdir(parents=True, exist_ok=True)
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=30)


@pytest.fixture
def store(mailroom, tmp_path):
    return Store(mailroom, tmp_path / "var" / "store.db")


def assert_err(r, code, *needles, cmd="campaign"):
    assert r.returncode == code, r
    assert re.search(rf"^mailroom {cmd} \w+: ", r.stderr, re.M), r
    for n in needles:
        assert re.search(n, r.stderr, re.I), (n, r.stderr)


# ------------------------------------------------------------------- add

def test_add_every_time_form(store, tmp_path):
    tpl, lst = write_inputs(tmp_path / "in")
    cases = [("now", 0), ("+90s", 90), ("+10m", 600), ("+2h", 7200),
             ("+1d", 86400)]
    for n, (at, delta) in enumerate(cases):
        before = int(time.time())
        r = store.add(tpl, lst, "--name", f"rel{n}", "--at", at)
        after = int(time.time())
        assert r.returncode == 0, r
        m = ADDED.match(r.stdout.strip())
        assert m and m.group(1) == f"rel{n}", r.stdout
        assert ISO.match(m.group(3)), m.group(3)
        start = iso_to_epoch(m.group(3))
        assert before + delta <= start <= after + delta, (at, m.group(3))
        fields, _, _ = store.show(f"rel{n}")
        assert fields["start"] == m.group(3)
        assert fields["stage"] == "created"
        assert fields["state"] == "scheduled"
        assert fields["id"] == m.group(2)

    r = store.add(tpl, lst, "--name", "iso", "--at", "2031-11-23T10:00:00Z")
    assert r.returncode == 0, r
    assert r.stdout.strip().endswith("scheduled for 2031-11-23T10:00:00Z")
    assert store.show("iso")[0]["start"] == "2031-11-23T10:00:00Z"

    epoch = iso_to_epoch("2031-11-23T10:00:00Z")
    r = store.add(tpl, lst, "--name", "epoch", "--at", f"@{epoch}")
    assert r.returncode == 0, r
    assert store.show("epoch")[0]["start"] == "2031-11-23T10:00:00Z"

    # A time in the past is accepted: the daemon starts it at once.
    r = store.add(tpl, lst, "--name", "past", "--at", "@1000000000")
    assert r.returncode == 0, r
    assert "past" in r.stderr
    assert store.show("past")[0]["start"] == "2001-09-09T01:46:40Z"

    for bad in ("tomorrow", "+", "+10x", "-10m", "2026-02-30T10:00:00Z",
                "2026-11-23 10:00:00", "2026-11-23T10:00:00", "@", "@12a"):
        r = store.add(tpl, lst, "--name", "bad", "--at", bad)
        assert_err(r, EX_USAGE, "--at", re.escape(bad))
    assert store.campaign("show", "bad").returncode == EX_NOINPUT


def test_add_default_name_and_absolute_paths(store, tmp_path):
    work = tmp_path / "work"
    write_inputs(work)
    before = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    r = store.add("template.eml", "./list.csv", "--route",
                  "*=127.0.0.2:2525", "--resolver", "127.0.0.1:5353",
                  "--accounting", "out/acct.json", "--accounting-format",
                  "json", "--reject-file", "rejects.csv",
                  "--forensics-dir", "forensics", "--from",
                  "bounce@sender.test", "-o", "smtp.max_connections=7",
                  "-o", "store.busy_timeout=2s", cwd=work)
    after = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    assert r.returncode == 0, r
    m = ADDED.match(r.stdout.strip())
    name = m.group(1)
    assert re.fullmatch(r"campaign-\d{8}-\d{6}", name), name
    assert before <= name[len("campaign-"):] <= after
    assert store.path.exists(), "the store and its directory are made"

    fields, options, _ = store.show(name)
    assert fields["template"] == str(work / "template.eml")
    assert fields["list"] == str(work / "list.csv")
    assert fields["account"] == "-"
    assert fields["recipients"] == "-"      # the list is read at start
    assert fields["owner"] == "-" and fields["rate"] == "-"
    assert options == [
        "dns.route=*=127.0.0.2:2525",
        "dns.resolver=127.0.0.1:5353",
        f"send.accounting_file={work}/out/acct.json",
        "send.accounting_format=json",
        f"send.reject_file={work}/rejects.csv",
        f"send.forensics_dir={work}/forensics",
        "send.mail_from=bounce@sender.test",
        "smtp.max_connections=7",
    ], options          # the store's own settings are not recorded

    # Paths through a symbolic link are recorded resolved.
    os.symlink(work, tmp_path / "link")
    r = store.add(tmp_path / "link" / "template.eml",
                  tmp_path / "link" / "list.csv", "--name", "linked")
    assert r.returncode == 0, r
    assert store.show("linked")[0]["list"] == str(work / "list.csv")


def test_add_refuses_bad_inputs_and_records_nothing(store, tmp_path):
    tpl, lst = write_inputs(tmp_path / "in")
    r = store.add(tpl, lst, "--name", "good", "--at", "+1h")
    assert r.returncode == 0, r
    d = tmp_path / "bad"
    d.mkdir()

    (d / "typo.eml").write_text(TEMPLATE.replace("{{name}}", "{{nmae}}", 1))
    r = store.add(d / "typo.eml", lst, "--name", "typo")
    assert_err(r, EX_DATAERR, r"\{\{nmae\}\}", "typo.eml")

    write_list(d / "noemail.csv", ["mail", "name"], [["a@x.test", "A"]])
    r = store.add(tpl, d / "noemail.csv", "--name", "noemail")
    assert_err(r, EX_DATAERR, "email", "noemail.csv")

    (d / "empty.csv").write_bytes(b"")
    r = store.add(tpl, d / "empty.csv", "--name", "empty")
    assert_err(r, EX_DATAERR, "empty", "empty.csv")

    (d / "nofrom.eml").write_text("To: {{email}}\nSubject: s\n\nbody\n")
    r = store.add(d / "nofrom.eml", lst, "--name", "nofrom")
    assert_err(r, EX_DATAERR, "nofrom.eml", "no From header")
    (d / "varfrom.eml").write_text("From: {{email}}\nSubject: s\n\nb\n")
    r = store.add(d / "varfrom.eml", lst, "--name", "varfrom")
    assert_err(r, EX_DATAERR, "envelope sender", "--from")
    r = store.add(d / "varfrom.eml", lst, "--name", "badfrom", "--from",
                  "not an address")
    assert_err(r, EX_DATAERR, "envelope sender \"not an address\"")

    r = store.add(d / "missing.eml", lst, "--name", "missing")
    assert_err(r, EX_NOINPUT, "template", "missing.eml",
               "no such file")
    r = store.add(tpl, d / "missing.csv", "--name", "missing")
    assert_err(r, EX_NOINPUT, "list", "missing.csv", "no such file")
    r = store.add(d, lst, "--name", "dir")
    assert_err(r, EX_NOINPUT, "directory")

    r = store.add(tpl, lst, "--name", "good")
    assert_err(r, EX_DATAERR, "good", "already exists")
    r = store.add(tpl, lst, "--name", "12345")
    assert_err(r, EX_DATAERR, "12345", "digits")
    r = store.add(tpl, lst, "--name", "two words")
    assert_err(r, EX_DATAERR, "space")

    r = store.add(tpl, lst, "--name", "noacct", "--account", "nobody")
    assert_err(r, EX_NOINPUT, "no account nobody", "account add")
    r = store.add(tpl, lst, "--name", "badroute", "--route", "nonsense")
    assert_err(r, 78, "nonsense")
    r = store.add(tpl, lst, "--name", "badconf", "-o", "smtp.port=0")
    assert_err(r, 78, "smtp.port")
    r = store.add(tpl, lst, "--name", "x", "--bogus")
    assert_err(r, EX_USAGE, "--bogus")
    r = store.add(tpl, "--name", "x")
    assert r.returncode == EX_USAGE, r

    header, rows = parse_list(store.campaign("list").stdout)
    assert [row[1] for row in rows] == ["good"], rows
    # The first (good) campaign is untouched by the refusals.
    fields = store.show("good")[0]
    assert fields["state"] == "scheduled" and fields["id"] == "1"


def test_add_help_and_usage(store, mailroom):
    r = run(mailroom, "campaign", "--help")
    assert r.returncode == 0
    for verb in ("add", "list", "show", "pause", "resume", "cancel"):
        assert f"mailroom campaign {verb}" in r.stdout
    for verb in ("add", "list", "show", "pause", "resume", "cancel"):
        r = run(mailroom, "campaign", verb, "--help")
        assert r.returncode == 0, r
        assert r.stdout.startswith(f"usage: mailroom campaign {verb}")
        assert "--store" in r.stdout and "Exit status" in r.stdout
    assert run(mailroom, "campaign").returncode == EX_USAGE
    r = run(mailroom, "campaign", "frobnicate")
    assert r.returncode == EX_USAGE and "frobnicate" in r.stderr
    r = run(mailroom, "campaign", "show", "--store", store.path)
    assert_err(r, EX_USAGE, "which campaign")
    r = run(mailroom, "campaign", "show", "a", "b", "--store", store.path)
    assert_err(r, EX_USAGE, '"b"')
    r = run(mailroom, "campaign", "list", "-o", "nonsense")
    assert_err(r, EX_USAGE, "section.key=value")


# ---------------------------------------------------------- unknown, missing

def test_missing_store_and_unknown_campaign(store, tmp_path):
    for args in (("list",), ("show", "x"), ("pause", "x"), ("resume", "x"),
                 ("cancel", "x")):
        r = store.campaign(*args)
        assert_err(r, EX_NOINPUT, re.escape(str(store.path)),
                   "does not exist")
    assert not store.path.exists(), "only add makes the store"
    assert not store.path.parent.exists()

    tpl, lst = write_inputs(tmp_path / "in")
    assert store.add(tpl, lst, "--name", "one").returncode == 0
    for args in (("show", "nope"), ("pause", "nope"), ("resume", "nope"),
                 ("cancel", "nope"), ("show", "99")):
        r = store.campaign(*args)
        where = re.escape(str(store.path))
        assert_err(r, EX_NOINPUT, f"no campaign {args[1]} in store {where}")

    r = store.campaign("list")
    assert r.returncode == 0, r
    header, rows = parse_list(r.stdout)
    assert header.split() == ["ID", "NAME", "STAGE", "STATE", "START",
                              "DELIVERED/BOUNCED/RECIPIENTS", "OWNER"]
    assert rows == [["1", "one", "created", "scheduled", rows[0][4],
                     "-/-/-", "-"]]
    assert ISO.match(rows[0][4])


# ------------------------------------------------------- state transitions

def test_pause_resume_cancel_rules(store, tmp_path):
    tpl, lst = write_inputs(tmp_path / "in")
    assert store.add(tpl, lst, "--name", "c1", "--at", "+1h").returncode == 0
    assert store.add(tpl, lst, "--name", "c2").returncode == 0

    r = store.campaign("resume", "c1")
    assert_err(r, EX_DATAERR, "c1 is scheduled, not paused")
    r = store.campaign("pause", "c1")
    assert r.returncode == 0 and r.stdout.strip() == "campaign c1 paused", r
    assert store.show("c1")[0]["state"] == "paused"
    r = store.campaign("pause", "c1")
    assert_err(r, EX_DATAERR, "c1 is paused", "scheduled or running")

    before = int(time.time())
    r = store.campaign("resume", "1")        # by id
    assert r.returncode == 0, r
    fields = store.show("c1")[0]
    assert fields["state"] == "scheduled"
    # resumed to start now, not at the hour it was first set for
    assert before <= iso_to_epoch(fields["start"]) <= int(time.time())
    assert r.stdout.strip() == \
        f"campaign c1 resumed: scheduled for {fields['start']}"

    r = store.campaign("cancel", "c1")
    assert r.returncode == 0 and r.stdout.strip() == \
        "campaign c1 cancelled", r
    assert store.show("c1")[0]["state"] == "cancelled"
    r = store.campaign("cancel", "c1")
    assert r.returncode == 0, r
    assert r.stdout.strip() == "campaign c1 was already cancelled"
    assert_err(store.campaign("resume", "c1"), EX_DATAERR, "cancelled",
               "never resumed")
    assert_err(store.campaign("pause", "c1"), EX_DATAERR, "cancelled")

    # A paused campaign can be cancelled too; c2 is untouched by all this.
    assert store.campaign("pause", "c2").returncode == 0
    assert store.campaign("cancel", "c2").returncode == 0
    header, rows = parse_list(store.campaign("list").stdout)
    assert [(r[1], r[3]) for r in rows] == [("c1", "cancelled"),
                                            ("c2", "cancelled")]


# ------------------------------------------------------------ a locked store

def test_locked_store_exit_75_nothing_overwritten(store, tmp_path):
    tpl, lst = write_inputs(tmp_path / "in")
    assert store.add(tpl, lst, "--name", "c1", "--at", "+1h").returncode == 0
    assert store.add(tpl, lst, "--name", "c2").returncode == 0
    assert store.campaign("pause", "c2").returncode == 0
    before_list = store.campaign("list").stdout
    before = {k: store.campaign("show", k).stdout for k in ("c1", "c2")}

    con = sqlite3.connect(store.path, isolation_level=None, timeout=0.1)
    con.execute("BEGIN IMMEDIATE")
    try:
        lock = ("-o", "store.busy_timeout=200ms")
        for args in (("add", "--template", tpl, "--list", lst, "--name",
                      "c3"),
                     ("pause", "c1"), ("cancel", "c1"), ("resume", "c2")):
            start = time.monotonic()
            r = store.campaign(*args, *lock)
            assert_err(r, EX_TEMPFAIL, "locked", "another process",
                       re.escape(str(store.path)))
            assert time.monotonic() - start < 5
        # Readers are not stopped by a writer (WAL).
        assert store.campaign("list", *lock).stdout == before_list
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert store.campaign("list").stdout == before_list
    for k, text in before.items():
        assert store.campaign("show", k).stdout == text
    assert store.campaign("show", "c3").returncode == EX_NOINPUT


# ----------------------------------------------------------------- end to end

def test_added_campaign_sent_with_send_resume(store, tmp_path, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    work = tmp_path / "work"
    rows = recipients(5)
    write_inputs(work, rows=rows)
    r = store.add("template.eml", "list.csv", "--name", "e2e",
                  "--route", f"*={peer.address}", "--accounting",
                  "acct.csv", cwd=work)
    assert r.returncode == 0, r
    fields, _, summary = store.show("e2e")
    assert (fields["stage"], fields["state"]) == ("created", "scheduled")
    assert fields["started"] == "-" and fields["finished"] == "-"
    assert summary == {}

    # Sent from elsewhere, as the daemon would: the recorded absolute
    # paths and settings (route, accounting) are used.
    s = store.send_resume("e2e", cwd=tmp_path / "elsewhere")
    assert s.returncode == 0, s
    assert sorted(m.rcpt_tos[0] for m in peer.messages) == \
        sorted(row[0] for row in rows)
    acct = (work / "acct.csv").read_text().splitlines()
    assert sum(1 for ln in acct if ",delivered," in ln) == 5
    assert not (tmp_path / "elsewhere" / "acct.csv").exists()

    fields, options, summary = store.show("e2e")
    assert (fields["stage"], fields["state"]) == ("complete", "done")
    assert fields["recipients"] == "5" and fields["delivered"] == "5"
    assert fields["bounced"] == "0" and fields["pending"] == "0"
    assert fields["rows"] == "5" and fields["rejected"] == "0"
    assert fields["in-flight-at-crash-total"] == "0"
    assert fields["owner"] == "-" and fields["lease-until"] == "-"
    assert ISO.match(fields["started"]) and ISO.match(fields["finished"])
    assert re.fullmatch(r"\d+\.\d msg/s", fields["rate"]), fields["rate"]
    assert summary["campaign"] == "e2e"
    assert summary["delivered"] == "5" and summary["recipients"] == "5"
    header, rows_ = parse_list(store.campaign("list").stdout)
    assert rows_[0][1:4] == ["e2e", "complete", "done"]
    assert rows_[0][5] == "5/0/5"

    # Never sent again, and no state change brings it back.
    again = store.send_resume("e2e", cwd=tmp_path / "elsewhere")
    assert again.returncode == EX_DATAERR, again
    assert "never sent again" in again.stderr
    assert len(peer.messages) == 5
    assert_err(store.campaign("resume", "e2e"), EX_DATAERR,
               "complete", "never sent again")
    assert_err(store.campaign("pause", "e2e"), EX_DATAERR, "complete")
    assert_err(store.campaign("cancel", "e2e"), EX_DATAERR, "complete")
    assert store.show("e2e")[0]["state"] == "done"


def test_pause_stops_a_running_sender_keeping_progress(store, tmp_path,
                                                        aio_peer):
    # Each message waits 0.3 s for its reply and there is one connection:
    # the sender is still at work when the pause arrives.
    peer = aio_peer(host="127.0.0.2", data_delay=0.3)
    work = tmp_path / "work"
    rows = recipients(12)
    write_inputs(work, rows=rows)
    r = store.add("template.eml", "list.csv", "--name", "slow", "--route",
                  f"*={peer.address}", "-o", "smtp.max_connections=1",
                  "-o", "smtp.initial_connections=1",
                  "-o", "recovery.snapshot_interval=200ms", cwd=work)
    assert r.returncode == 0, r
    argv = [store.mailroom, "send", "--store", str(store.path), "--resume",
            "slow", "--no-progress", "-o", "general.hostname=mailroom.test"]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert peer.wait_messages(2, timeout=10), "sender did not start"
        fields = store.show("slow")[0]
        assert fields["state"] == "running"
        assert fields["owner"].endswith(f":{proc.pid}")
        r = store.campaign("pause", "slow")
        assert r.returncode == 0, r
        assert "stops at its next snapshot" in r.stdout
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EX_TEMPFAIL, (out, err)
    fields = store.show("slow")[0]
    assert fields["state"] == "paused" and fields["owner"] == "-"
    done = int(fields["delivered"])
    assert 2 <= done < 12, fields
    assert fields["pending"] == str(12 - done)

    peer.data_delay = 0
    r = store.campaign("resume", "slow")
    assert r.returncode == 0, r
    s = store.send_resume("slow", cwd=tmp_path)
    assert s.returncode == 0, s
    fields = store.show("slow")[0]
    assert (fields["state"], fields["delivered"]) == ("done", "12")
    got = sorted({m.rcpt_tos[0] for m in peer.messages})
    assert got == sorted(row[0] for row in rows)


def test_send_resume_of_a_cancelled_campaign_is_refused(store, tmp_path):
    tpl, lst = write_inputs(tmp_path / "in")
    assert store.add(tpl, lst, "--name", "gone").returncode == 0
    assert store.campaign("cancel", "gone").returncode == 0
    before = store.path.read_bytes()
    r = store.send_resume("gone", tmp_path / "run")
    assert r.returncode == EX_DATAERR, r
    assert r.stderr == "mailroom send: campaign gone was cancelled\n", r
    assert "in-flight-at-crash" not in r.stdout
    assert store.show("gone")[0]["state"] == "cancelled"
    assert store.path.read_bytes() == before


@pytest.mark.parametrize("extra", [["--template", "t.eml"],
                                   ["--list", "l.csv"],
                                   ["--campaign", "other"]])
def test_send_resume_takes_no_new_inputs(store, tmp_path, extra):
    """--resume sends what the store recorded: new inputs are a usage
    error, before the store is even opened."""
    r = store.send_resume("any", tmp_path / "run", extra=extra)
    assert r.returncode == 64, r
    assert "--resume takes the template and list recorded" in r.stderr
    assert not store.path.exists()
