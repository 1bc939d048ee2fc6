"""`mailroom account` and the quotas of sending accounts (SPEC D16).

The command: add, change, list, show, remove, with their refusals (a
taken name, an unknown account, a missing store, bad limits) and a store
locked by another process.  Then the quota through real sends to a
loopback peer: an allowance that covers the campaign (used grows by the
recipients once they are final; reserved goes back to 0), one that does
not (exit 77 naming the account and the numbers, and nothing is sent),
the warning at the threshold, two campaigns of one account (the second
refused while the first's reservation holds, and the account cannot be
removed meanwhile), a period that rolls over, and counts that stay exact
when a sender is killed with SIGKILL midway and resumed.
"""
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from peers import (QUICK_OPTS, TEMPLATE, recipients, wait_until,
                   write_list)

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL, EX_NOPERM = \
    0, 64, 65, 66, 75, 77


def run(mailroom, *args, cwd=None, timeout=30):
    return subprocess.run([mailroom, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def kv(stdout):
    out = {}
    for line in stdout.splitlines():
        k, _, v = line.partition(": ")
        out[k] = v
    return out


def assert_err(r, code, *needles, cmd=r"account \w+"):
    assert r.returncode == code, r
    assert re.search(rf"^mailroom {cmd}: ", r.stderr, re.M), r
    for n in needles:
        assert re.search(n, r.stderr, re.I), (n, r.stderr)


class Env:
    """A store, a working directory and the commands against them."""

    def __init__(self, mailroom, tmp_path):
        self.mailroom = mailroom
        self.dir = tmp_path
        self.store = tmp_path / "store.db"
        (tmp_path / "template.eml").write_text(TEMPLATE)

    def account(self, *args):
        return run(self.mailroom, "account", *args, "--store", self.store)

    def show(self, name):
        r = self.account("show", name)
        assert r.returncode == 0, r
        return kv(r.stdout)

    def usage(self, name):
        q = self.show(name)
        return int(q["used"]), int(q["reserved"])

    def write_list(self, name, n, prefix="r"):
        path = self.dir / f"{name}.csv"
        write_list(path, ("email", "name"), recipients(n, prefix=prefix))
        return path

    def send_argv(self, peer, *args):
        """`mailroom send` to peer (None: the route the campaign was
        recorded with)."""
        route = ["--route", f"*={peer.address}"] if peer else []
        argv = [self.mailroom, "send", "--store", str(self.store),
                "--no-progress", "-o", "general.hostname=mailroom.test",
                *route, *map(str, args)]
        for k, v in QUICK_OPTS.items():
            argv += ["-o", f"{k}={v}"]
        return argv

    def send(self, peer, campaign, account, n, *extra, prefix="r"):
        lst = self.write_list(campaign, n, prefix)
        return subprocess.run(
            self.send_argv(peer, "--campaign", campaign, "--account",
                           account, "--template", self.dir / "template.eml",
                           "--list", lst, *extra),
            cwd=self.dir, capture_output=True, text=True, timeout=30)

    def resume(self, campaign, *extra):
        return subprocess.run(self.send_argv(None, "--resume", campaign,
                                             *extra),
                              cwd=self.dir, capture_output=True, text=True,
                              timeout=30)


@pytest.fixture
def env(mailroom, tmp_path):
    return Env(mailroom, tmp_path)


@pytest.fixture
def peer(aio_peer):
    return aio_peer(host="127.0.0.2")


# ------------------------------------------------------------- the command

def test_account_add_change_list_show_remove(env):
    r = env.account("list")
    assert_err(r, EX_NOINPUT, "does not exist")
    r = env.account("add", "acme", "--allowance", "1000", "--period", "1d")
    assert r.returncode == 0, r
    assert r.stdout.strip() == \
        "account acme: 1000 messages per 1d, warning at 80%, no password"
    assert env.store.exists(), "add makes the store"
    r = env.account("add", "beta", "--allowance", "50", "--period", "3600",
                    "--warn", "50%")
    assert r.returncode == 0, r
    assert "50 messages per 1h, warning at 50%" in r.stdout

    q = env.show("acme")
    assert q == {"name": "acme", "allowance": "1000", "period": "1d",
                 "warn": "80%", "password": "none",
                 "period-start": q["period-start"],
                 "period-end": q["period-end"], "used": "0",
                 "reserved": "0", "remaining": "1000"}
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert q["period-start"] == f"{day}T00:00:00Z"
    assert q["period-end"].endswith("T00:00:00Z")

    r = env.account("change", "acme", "--allowance", "2000", "--warn", "90")
    assert r.returncode == 0, r
    assert r.stdout.strip() == \
        "account acme: 2000 messages per 1d, warning at 90%, no password"
    r = env.account("change", "beta", "--period", "30d")
    assert r.returncode == 0, r
    assert env.show("beta")["period"] == "30d"
    assert env.show("beta")["allowance"] == "50"

    r = env.account("list")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ALLOWANCE", "PERIOD", "WARN",
                                "USED", "RESERVED", "PASSWORD"]
    assert [ln.split() for ln in lines[1:]] == [
        ["acme", "2000", "1d", "90%", "0", "0", "none"],
        ["beta", "50", "30d", "50%", "0", "0", "none"]]
    # Columns are aligned: every row as long as the heading.
    assert len({len(ln) for ln in lines}) == 1, lines

    r = env.account("remove", "beta")
    assert r.returncode == 0 and r.stdout.strip() == "account beta removed"
    assert [ln.split()[0] for ln in
            env.account("list").stdout.splitlines()[1:]] == ["acme"]

    # Refusals.
    assert_err(env.account("add", "acme", "--allowance", "1", "--period",
                           "1h"), EX_DATAERR, "acme already exists")
    for args in (("show", "beta"), ("remove", "beta"),
                 ("change", "beta", "--warn", "10")):
        assert_err(env.account(*args), EX_NOINPUT,
                   f"no account beta in store {re.escape(str(env.store))}")
    for args, needle in (
            (("add", "x", "--period", "1h"), "--allowance and --period"),
            (("add", "x", "--allowance", "1"), "--allowance and --period"),
            (("add", "x", "--allowance", "-1", "--period", "1h"),
             "--allowance"),
            (("add", "x", "--allowance", "1e3", "--period", "1h"),
             "--allowance"),
            (("add", "x", "--allowance", "1", "--period", "1500ms"),
             "--period"),
            (("add", "x", "--allowance", "1", "--period", "soon"),
             "--period"),
            (("add", "x", "--allowance", "1", "--period", "1h", "--warn",
              "0"), "--warn"),
            (("add", "x", "--allowance", "1", "--period", "1h", "--warn",
              "101"), "--warn"),
            (("add", "two words", "--allowance", "1", "--period", "1h"),
             "space"),
            (("change", "acme"), "nothing to change"),
            (("show",), "which account"),
            (("show", "acme", "extra"), '"extra"'),
            (("show", "acme", "--warn", "5"), "takes no limits"),
            (("frob",), "unknown command")):
        r = env.account(*args)
        assert r.returncode == EX_USAGE, (args, r)
        assert needle in r.stderr, (args, r.stderr)
    assert env.show("acme")["allowance"] == "2000"

    r = run(env.mailroom, "account", "--help")
    assert r.returncode == 0 and "mailroom account remove" in r.stdout
    for verb in ("add", "change", "list", "show", "remove"):
        r = run(env.mailroom, "account", verb, "--help")
        assert r.returncode == 0 and r.stdout.startswith(
            f"usage: mailroom account {verb}"), r


def test_account_locked_store(env):
    assert env.account("add", "acme", "--allowance", "10", "--period",
                       "1h").returncode == 0
    con = sqlite3.connect(env.store, isolation_level=None, timeout=0.1)
    con.execute("BEGIN IMMEDIATE")
    try:
        lock = ("-o", "store.busy_timeout=200ms")
        for args in (("add", "other", "--allowance", "1", "--period", "1h"),
                     ("change", "acme", "--allowance", "99"),
                     ("remove", "acme")):
            r = env.account(*args, *lock)
            assert_err(r, EX_TEMPFAIL, "locked", "another process")
        assert env.account("show", "acme", *lock).returncode == 0
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert env.show("acme")["allowance"] == "10"
    assert env.account("show", "other").returncode == EX_NOINPUT


# ------------------------------------------------------- quota in real sends

def test_allowance_covers_the_campaign(env, peer):
    assert env.account("add", "acme", "--allowance", "10", "--period",
                       "1d").returncode == 0
    r = env.send(peer, "first", "acme", 4)
    assert r.returncode == 0, r
    assert len(peer.messages) == 4
    assert "warning" not in r.stderr, r.stderr     # 40% < 80%
    q = env.show("acme")
    assert (q["used"], q["reserved"], q["remaining"]) == ("4", "0", "6")

    # A campaign recorded with `campaign add --account` counts too.
    lst = env.write_list("later", 3, prefix="l")
    r = run(env.mailroom, "campaign", "add", "--store", env.store,
            "--template", env.dir / "template.eml", "--list", lst,
            "--name", "later", "--account", "acme", "--route",
            f"*={peer.address}")
    assert r.returncode == 0, r
    r = env.resume("later")
    assert r.returncode == 0, r
    assert len(peer.messages) == 7
    assert env.usage("acme") == (7, 0)
    line = [ln for ln in env.account("list").stdout.splitlines()
            if ln.startswith("acme")][0]
    assert line.split() == ["acme", "10", "1d", "80%", "7", "0", "none"]


def test_allowance_too_small_nothing_sent(env, peer):
    assert env.account("add", "small", "--allowance", "3", "--period",
                       "1h").returncode == 0
    r = env.send(peer, "big", "small", 4)
    assert r.returncode == EX_NOPERM, r
    err = r.stderr
    assert re.search(r"^mailroom send: account small: allowance of 3 ",
                     err, re.M), err
    assert "0 used" in err and "0 reserved" in err, err
    assert re.search(r"campaign big needs 4\b", err), err
    assert peer.connections == 0 and peer.messages == []
    assert env.usage("small") == (0, 0)

    # Raising the allowance lets the same campaign go.
    assert env.account("change", "small", "--allowance", "4").returncode == 0
    r = env.resume("big")
    assert r.returncode == 0, r
    assert len(peer.messages) == 4
    assert env.usage("small") == (4, 0)


def test_warning_at_the_threshold(env, peer):
    assert env.account("add", "warned", "--allowance", "5", "--period",
                       "1d", "--warn", "60").returncode == 0
    r = env.send(peer, "c1", "warned", 3)
    assert r.returncode == 0, r
    m = re.search(r"^mailroom send: warning: account warned has 3 of 5 "
                  r"messages \(60%\)", r.stderr, re.M)
    assert m, r.stderr
    assert env.usage("warned") == (3, 0)

    assert env.account("add", "calm", "--allowance", "10", "--period",
                       "1d", "--warn", "60").returncode == 0
    r = env.send(peer, "c2", "calm", 5, prefix="c")    # 50% < 60%
    assert r.returncode == 0, r
    assert "warning: account" not in r.stderr, r.stderr


def test_second_campaign_refused_while_first_holds_reservation(
        env, aio_peer):
    slow = aio_peer(host="127.0.0.2", data_delay=0.4)
    assert env.account("add", "shared", "--allowance", "5", "--period",
                       "1d").returncode == 0
    lst = env.write_list("first", 4)
    proc = subprocess.Popen(
        env.send_argv(slow, "--campaign", "first", "--account", "shared",
                      "--template", env.dir / "template.eml", "--list", lst,
                      "-o", "smtp.max_connections=1",
                      "-o", "smtp.initial_connections=1"),
        cwd=env.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert wait_until(lambda: sum(env.usage("shared")) == 4, 10), \
            env.show("shared")
        assert env.usage("shared")[1] > 0
        r = env.send(slow, "second", "shared", 2, prefix="s")
        assert r.returncode == EX_NOPERM, r
        m = re.search(r"^mailroom send: account shared: allowance of 5 "
                      r"messages per 86400s period \(from \S+\) exceeded: "
                      r"(\d+) used, (\d+) reserved by other campaigns, "
                      r"campaign second needs 2$", r.stderr, re.M)
        assert m, r.stderr
        assert int(m.group(1)) + int(m.group(2)) == 4 and \
            int(m.group(2)) > 0, m.group(0)
        # The account cannot go while the first holds its reservation.
        r = env.account("remove", "shared")
        assert_err(r, EX_DATAERR, "shared cannot be removed",
                   "reservation", r"first \(running\)")
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    assert sorted(m.rcpt_tos[0] for m in slow.messages) == \
        [f"r{i}@x.test" for i in range(4)]
    assert env.usage("shared") == (4, 0)
    # Once the first is complete the reservation is gone: the account can
    # be removed (the refused second campaign is only paused).
    r = env.account("remove", "shared")
    assert r.returncode == 0, r
    assert "second (paused)" in r.stderr and "no longer exists" in r.stderr


def test_cancel_gives_back_a_dead_senders_reservation(env, aio_peer):
    """A sender killed midway leaves its reservation, and the account
    cannot be removed.  Cancelled while the dead sender's lease lasts (the
    CLI cannot tell it from a live one), the campaign keeps it; cancelled
    again once the lease has run out, it gives it back."""
    slow = aio_peer(host="127.0.0.2", data_delay=1.0)
    assert env.account("add", "gone", "--allowance", "10", "--period",
                       "1d").returncode == 0
    lst = env.write_list("dead", 3)
    proc = subprocess.Popen(
        env.send_argv(slow, "--campaign", "dead", "--account", "gone",
                      "--template", env.dir / "template.eml", "--list", lst,
                      "-o", "store.lease_time=2s"),
        cwd=env.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: env.usage("gone") == (0, 3), 10), \
            env.show("gone")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    r = env.account("remove", "gone")
    assert_err(r, EX_DATAERR, "gone cannot be removed", "reservation",
               r"dead \(running\)")

    def cancel():
        return run(env.mailroom, "campaign", "cancel", "dead", "--store",
                   env.store)

    r = cancel()
    assert r.returncode == 0, r
    assert r.stdout.startswith("campaign dead cancelled: its sender ")
    assert "stops at its next snapshot" in r.stdout
    assert env.usage("gone") == (0, 3)
    assert_err(env.account("remove", "gone"), EX_DATAERR,
               r"dead \(cancelled\)", "cancel it again")

    # The lease (2 s, in whole seconds) runs out within 3 s of the kill.
    assert wait_until(lambda: "(ran out)" in run(
        env.mailroom, "campaign", "show", "dead", "--store",
        env.store).stdout, timeout=5, interval=0.2)
    r = cancel()
    assert r.returncode == 0, r
    assert r.stdout.strip() == (
        "campaign dead was already cancelled; what it had reserved of "
        "account gone is given back")
    assert env.usage("gone") == (0, 0)
    r = env.account("remove", "gone")
    assert r.returncode == 0, r


def _at_period_start(period, margin=0.15):
    """Sleep until just after the start of a fixed window of period s."""
    t = time.time()
    time.sleep(period - t % period + margin)


def test_period_rollover(env, peer):
    period = 2
    assert env.account("add", "roll", "--allowance", "2", "--period",
                       f"{period}s").returncode == 0
    for attempt in range(3):
        _at_period_start(period)
        window = int(time.time()) // period
        a = env.send(peer, f"a{attempt}", "roll", 2, prefix=f"a{attempt}")
        b = env.send(peer, f"b{attempt}", "roll", 1, prefix=f"b{attempt}")
        q = env.show("roll")
        if int(time.time()) // period == window:
            break       # all of it inside one period, as wanted
    else:
        pytest.skip("the machine is too slow for a 2 s period")
    assert a.returncode == 0, a
    assert (q["used"], q["reserved"], q["remaining"]) == ("2", "0", "0")
    assert b.returncode == EX_NOPERM, b
    assert "2 used" in b.stderr, b.stderr

    # The next period starts from 0: the refused campaign now goes.
    _at_period_start(period)
    q = env.show("roll")
    assert (q["used"], q["reserved"]) == ("0", "0"), q
    r = env.resume(f"b{attempt}")
    assert r.returncode == 0, r
    assert len([m for m in peer.messages
                if m.rcpt_tos[0].startswith(f"b{attempt}")]) == 1


def test_counts_exact_across_a_kill(env, aio_peer):
    """SIGKILL midway, then --resume: used ends equal to the recipients.

    Snapshots are rare (5 s), so most outcomes of the killed run are only
    in its journal when it dies: the resumed run must count them too.
    """
    slow = aio_peer(host="127.0.0.2", data_delay=0.15)
    n = 24
    assert env.account("add", "exact", "--allowance", "100", "--period",
                       "1d").returncode == 0
    lst = env.write_list("killed", n)
    proc = subprocess.Popen(
        env.send_argv(slow, "--campaign", "killed", "--account", "exact",
                      "--template", env.dir / "template.eml", "--list", lst,
                      "-o", "smtp.max_connections=1",
                      "-o", "smtp.initial_connections=1",
                      "-o", "recovery.snapshot_interval=5s"),
        cwd=env.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert slow.wait_messages(6, timeout=10), "the sender did not start"
        assert proc.poll() is None, "the sender finished too soon"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    before = len(slow.messages)
    assert before < n
    used, reserved = env.usage("exact")
    assert used + reserved == n, (used, reserved)

    slow.data_delay = 0
    r = env.resume("killed")
    assert r.returncode == 0, r
    assert env.usage("exact") == (n, 0)
    got = {m.rcpt_tos[0] for m in slow.messages}
    assert got == {f"r{i}@x.test" for i in range(n)}
    # At most the messages in flight at the kill went twice.
    assert len(slow.messages) - n <= 1
    s = kv(run(env.mailroom, "campaign", "show", "--store", env.store,
               "killed").stdout)
    assert (s["state"], s["delivered"], s["account"]) == ("done", str(n),
                                                          "exact")
