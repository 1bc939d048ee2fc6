"""bench/aggregate.py - POP3 aggregation (issue 5): a user with three
accounts downloads and deletes everything, through `mailroom pop3-proxy
--aggregate` and, as users do today, with fetchmail polling the three
servers itself; both in the same run.

    /usr/bin/python3 bench/aggregate.py [MESSAGES] [PAIRS]   (aggregate.sh)

    MAILROOM_BIN   the mailroom binary (default build/mailroom)
    AGG_LOG        mailroom's log level (default warn); set, it also
                   prints the accounting file at the end
    AGG_VERBOSE    set: fetchmail -v (its POP3 dialogue in errors)

Three tuned Dovecot instances (tests/integration/dovecot.py), one account
each (acct0, acct1, acct2), every one filled with MESSAGES messages
(default 500): sizes drawn log-uniformly between 2 KB and 50 KB with a
fixed seed (median about 10 KB), text lines, an X-Bench-Id header each.
The messages are written straight into each Maildir's new/ (owned by the
mail uid, as Dovecot's own deliveries are): LMTP would take longer than
the runs themselves, and Dovecot picks the files up at the next login the
same way.  The same messages, under new file names, before every run.

  direct    one fetchmail run (one rc file, three `poll` entries, one per
            server), --nokeep: RETR then DELE per message, each server in
            turn;
  mailroom  one fetchmail run with one `poll` of the aggregating proxy
            (user joe in the registry with the three accounts): RETR per
            message streamed from the owning server, DELE answered by the
            proxy, the deletions sent to the servers at QUIT.

Both use the same mda (a shell writing each message to its own file).
Per run: wall time of the fetchmail process, messages and bytes the mda
wrote, CPU seconds of fetchmail with its mda children (wait4), of the
proxy's process (/proc, as bench/pop3.py) and of the three Dovecots.
Each run is checked: every X-Bench-Id arrived once and the three
mailboxes are empty afterwards.  PAIRS (default 2) pairs, the order
alternating (direct first, then mailroom first, ...).  Everything stays
on 127.0.0.1; every process started is stopped by PID.
"""
import math
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))

from dovecot import MAIL_UID, Dovecot  # noqa: E402
from pop3 import cpu_seconds, stop  # noqa: E402

MAILROOM = os.environ.get("MAILROOM_BIN", str(ROOT / "build" / "mailroom"))
ACCOUNTS = 3
SEED = 5
MIN_SIZE, MAX_SIZE = 2 * 1024, 50 * 1024
VERBOSE = ["-v"] if os.environ.get("AGG_VERBOSE") else []
ID_RE = re.compile(rb"^X-Bench-Id: (\S+)$", re.M)


# ------------------------------------------------------------- messages

def make_messages(n_accounts, n, seed=SEED):
    """{account index: [message bytes (LF line ends, as in a Maildir)]}."""
    rnd = random.Random(seed)
    words = ["mail", "account", "server", "meeting", "report", "the", "and",
             "of", "to", "invoice", "please", "find", "attached", "regards",
             "tomorrow", "project", "status", "update", "thanks", "a", "in",
             "for", "with", "review", "budget", "draft", "schedule", "team"]
    lines = []
    for _ in range(4000):
        line, width = [], 0
        while width < 66:
            w = rnd.choice(words)
            line.append(w)
            width += len(w) + 1
        lines.append((" ".join(line) + "\n").encode())
    boxes = {}
    for a in range(n_accounts):
        box = []
        for i in range(n):
            size = int(math.exp(rnd.uniform(math.log(MIN_SIZE),
                                             math.log(MAX_SIZE))))
            head = (f"From: Sender {i} <sender{i}@example.test>\n"
                    f"To: acct{a}@example.test\n"
                    f"Subject: Bench message {i} of account {a}\n"
                    f"Date: Mon, 1 Jan 2024 12:00:00 +0000\n"
                    f"Message-ID: <bench-{a}-{i}@example.test>\n"
                    f"X-Bench-Id: {a}-{i}\n"
                    f"MIME-Version: 1.0\n"
                    f"Content-Type: text/plain; charset=us-ascii\n\n")
            parts, total = [head.encode()], len(head)
            k = rnd.randrange(len(lines))
            while total < size:
                ln = lines[k % len(lines)]
                parts.append(ln)
                total += len(ln)
                k += 1
            box.append(b"".join(parts))
        boxes[a] = box
    return boxes


FILLS = iter(range(1, 1_000_000))


def fill(d, user, messages):
    """Write messages into user's Maildir/new (fresh names every fill)."""
    n = next(FILLS)
    maildir = d.home(user) / "Maildir"
    for sub in ("cur", "new", "tmp"):
        p = maildir / sub
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(p, MAIL_UID, MAIL_UID)
    os.chown(maildir, MAIL_UID, MAIL_UID)
    base = 1_700_000_000 + n
    for i, body in enumerate(messages):
        name = maildir / "new" / f"{base}.M{i}P{n}.bench"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fchown(fd, MAIL_UID, MAIL_UID)
        finally:
            os.close(fd)


# ------------------------------------------------------------- fetchmail

def mda(out):
    """An mda line: one file per message, no extra process but cat."""
    return (f"\"/bin/sh -c 'f={out}/msg.$$; while [ -e $f ]; do f=$f.x; "
            f"done; cat > $f'\"")


def run_fetchmail(work, name, polls):
    """Run fetchmail over polls [(port, user, password)]; return
    (wall s, fetchmail+mda CPU s, out dir, output)."""
    top = work / name
    if top.exists():
        shutil.rmtree(top)
    out = top / "out"
    out.mkdir(parents=True)
    rc = top / "fetchmailrc"
    lines = ["set no bouncemail\n"]
    for port, user, password in polls:
        lines.append(f'poll 127.0.0.1 protocol pop3 port {port} '
                     f'user "{user}" password "{password}" is root here '
                     f'sslproto "" mda {mda(out)}\n')
    rc.write_text("".join(lines))
    os.chmod(rc, 0o600)
    env = dict(os.environ, FETCHMAILHOME=str(top), HOME=str(top))
    t0 = time.monotonic()
    proc = subprocess.Popen(["fetchmail", "-f", str(rc), "-N", "--nosyslog",
                             "--nokeep", *VERBOSE], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    text = output.decode(errors="replace")
    if proc.returncode != 0:
        other = [x for x in text.splitlines()
                 if not x.startswith("reading message")]
        raise RuntimeError(f"fetchmail ({name}) exited {proc.returncode}:"
                           "\n" + "\n".join(other[-40:]))
    return wall, usage.ru_utime + usage.ru_stime, out, text


def collect(out, expected):
    """(messages, bytes) the mda wrote; every expected id exactly once."""
    ids, total, n = [], 0, 0
    for f in out.iterdir():
        data = f.read_bytes()
        total += len(data)
        n += 1
        ids += [m.decode() for m in ID_RE.findall(data)]
    if len(ids) != len(set(ids)) or set(ids) != expected:
        missing = len(expected - set(ids))
        raise RuntimeError(f"{out}: {n} files, {len(set(ids))} distinct "
                           f"ids, {missing} missing")
    return n, total


# ------------------------------------------------------------- mailroom

def registry(store, key, *args):
    r = subprocess.run([MAILROOM, "registry", "--store", str(store),
                        "--key-file", str(key), "-o",
                        "registry.pbkdf2_iterations=1000", *map(str, args)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"registry {args[:2]}: {r.stderr}")
    return r.stdout


def start_proxy(work, dovecots):
    store, key = work / "registry.db", work / "registry.key"
    registry(store, key, "user", "add", "joe", "--password", "jpw")
    for a, d in enumerate(dovecots):
        registry(store, key, "account", "add", "joe", "--host", "127.0.0.1",
                 "--port", d.pop3_port, "--login", f"acct{a}", "--secret",
                 f"pw{a}")
    err = open(work / "mailroom.err", "wb")
    proc = subprocess.Popen(
        [MAILROOM, "pop3-proxy", "--aggregate", "--store", str(store),
         "--key-file", str(key), "--listen", "127.0.0.1:0",
         "-o", f"general.log_level={os.environ.get('AGG_LOG', 'warn')}",
         "-o", f"pop3_proxy.accounting_file={work / 'accounting.jsonl'}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
        text=True)
    err.close()
    line = proc.stdout.readline()
    if not line.startswith("listen: "):
        stop(proc)
        raise RuntimeError(f"mailroom pop3-proxy did not start: {line!r}\n"
                           + (work / "mailroom.err").read_text())
    return proc, int(line.rsplit(":", 1)[1])


# ------------------------------------------------------------------ runs

def one_run(work, kind, label, dovecots, boxes, proxy, proxy_port):
    for a, d in enumerate(dovecots):
        fill(d, f"acct{a}", boxes[a])
    expected = {f"{a}-{i}" for a in boxes for i in range(len(boxes[a]))}
    dcpu0 = sum(cpu_seconds(d.proc.pid) for d in dovecots)
    pcpu0 = cpu_seconds(proxy.pid)
    if kind == "direct":
        polls = [(d.pop3_port, f"acct{a}", f"pw{a}")
                 for a, d in enumerate(dovecots)]
    else:
        polls = [(proxy_port, "joe", "jpw")]
    wall, fcpu, out, text = run_fetchmail(work, label.replace(" ", "-"),
                                           polls)
    pcpu = cpu_seconds(proxy.pid) - pcpu0
    dcpu = sum(cpu_seconds(d.proc.pid) for d in dovecots) - dcpu0
    n, nbytes = collect(out, expected)
    left = [d.message_count(f"acct{a}") for a, d in enumerate(dovecots)]
    if any(left):
        raise RuntimeError(f"{label}: messages left on the servers: {left}"
                           f"\n{text[-2000:]}")
    shutil.rmtree(out)
    return {"run": label, "kind": kind, "wall": wall, "messages": n,
            "bytes": nbytes, "fetchmail_cpu": fcpu,
            "mailroom_cpu": pcpu if kind == "mailroom" else None,
            "dovecot_cpu": dcpu}


def report(rows, boxes, load0, load1, t_start):
    n_msgs = sum(len(b) for b in boxes.values())
    octets = sum(len(m) + m.count(b"\n") for b in boxes.values() for m in b)
    print(f"\n{ACCOUNTS} accounts on {ACCOUNTS} Dovecot instances, "
          f"{n_msgs // ACCOUNTS} messages each ({n_msgs} in all, "
          f"{octets:,} octets in POP3's CRLF form, sizes 2-50 KB "
          f"log-uniform, seed {SEED})")
    print(f"machine: {os.cpu_count()} CPUs, Linux {os.uname().release}; "
          f"fetchmail, mailroom and the Dovecots share them")
    print(f"load average at start: {load0}; at end: {load1}\n")
    print("| run | wall s | messages | bytes written by the mda | "
          "fetchmail+mda CPU s | mailroom CPU s | Dovecot CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mc = "-" if r["mailroom_cpu"] is None else f"{r['mailroom_cpu']:.2f}"
        print(f"| {r['run']} | {r['wall']:.2f} | {r['messages']} | "
              f"{r['bytes']:,} | {r['fetchmail_cpu']:.2f} | {mc} | "
              f"{r['dovecot_cpu']:.2f} |")
    print()
    pairs = {}
    for r in rows:
        pairs.setdefault(r["run"].split()[0], {})[r["kind"]] = r
    ratios = []
    for p, kinds in pairs.items():
        if "direct" in kinds and "mailroom" in kinds:
            x = kinds["mailroom"]["wall"] / kinds["direct"]["wall"]
            ratios.append(x)
            print(f"- pair {p}: mailroom wall / direct wall = {x:.3f}")
    if ratios:
        worst = max(ratios)
        print(f"- target mailroom <= direct (ratio <= 1.0): "
              f"{'met' if worst <= 1.0 else 'NOT met'} (worst pair "
              f"{worst:.3f})")
    print(f"- bench wall time {time.monotonic() - t_start:.0f} s")


def main():
    t_start = time.monotonic()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    n_pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    if not os.access(MAILROOM, os.X_OK):
        sys.exit(f"aggregate.py: no mailroom binary at {MAILROOM} "
                 f"(build it, or set MAILROOM_BIN)")
    if not shutil.which("fetchmail"):
        sys.exit("aggregate.py: fetchmail is not installed")
    load0 = pathlib.Path("/proc/loadavg").read_text().strip()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-bench-agg-"))
    boxes = make_messages(ACCOUNTS, n)
    dovecots, proxy = [], None
    try:
        for a in range(ACCOUNTS):
            dovecots.append(Dovecot(work, users={f"acct{a}": f"pw{a}"},
                                    tuned=True, auth_penalty=False))
        proxy, port = start_proxy(work, dovecots)
        rows = []
        for p in range(1, n_pairs + 1):
            order = ("direct", "mailroom") if p % 2 else ("mailroom",
                                                         "direct")
            for kind in order:
                r = one_run(work, kind, f"{p} {kind}", dovecots, boxes,
                            proxy, port)
                rows.append(r)
                print(f"{r['run']}: {r['wall']:.2f} s, {r['messages']} "
                      f"messages, {r['bytes']:,} bytes", file=sys.stderr,
                      flush=True)
        load1 = pathlib.Path("/proc/loadavg").read_text().strip()
        report(rows, boxes, load0, load1, t_start)
    finally:
        stop(proxy)
        for d in dovecots:
            d.terminate()
        for d in dovecots:
            d.stop()
        err = (work / "mailroom.err")
        if err.exists() and err.read_text().strip():
            print("mailroom's stderr:\n" + err.read_text()[-3000:])
        acct = work / "accounting.jsonl"
        if os.environ.get("AGG_LOG") and acct.exists():
            print("accounting:\n" + acct.read_text()[-3000:])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
