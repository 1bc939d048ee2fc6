"""bench/shaping.py - traffic shaping (issue 6): the three-receiver
campaign of tests/integration/test_shaping.py, sent by mailroom with its
adaptive controller and with fixed concurrency, in one run, to show what
adaptation buys in total completion time.

    /usr/bin/python3 bench/shaping.py [PAIRS] [FIXED ...]

    PAIRS          rounds of (A) and every (B) (default 2); the order
                   reverses every round: A, B.., then B.., A, ...
    FIXED          smtp.max_connections of the fixed runs (default 20 100:
                   the default an operator who changes nothing gets, and
                   the same ceiling (A) is given)
    MAILROOM_BIN   the mailroom binary (default build/mailroom)
    SHAPING_SCALE  multiply the recipient counts (default 1; e.g. 0.1 to
                   try the script quickly)
    SHAPING_TIMEOUT  seconds a run may take before mailroom is killed
                   (default 600)
    SHAPING_SET    more settings for every run, "section.key=value ..."
                   (e.g. governor.initial_slots=300)
    SHAPING_KEEP   set: keep the work directory (lists, accounting files,
                   mailroom's output, the receivers' JSON)

One run: three receivers, each a process of its own running
tests/integration/receiver.py (aiosmtpd), started fresh for the run:

  fast      127.0.0.3, accepts at once;
  slow      127.0.0.2, 300 ms before each reply to EHLO, MAIL, RCPT and the
            final dot (a message costs a connection 0.9 s);
  throttle  127.0.0.2, "421 4.7.0" (and hang-up) at the MAIL after 50
            messages on one connection, "451 4.7.0" to any RCPT past 600
            accepted recipients in the last second;

and one `mailroom send` of a personalized template (every message
differs: no recipients share a transaction) to 50,000 recipients, 30,000
at fast.test, 15,000 at throttle.test, 5,000 at slow.test, shuffled (seed
1, as the test), routed with --route.  Every run has queue.retry_base=1s,
queue.retry_max_interval=2s, queue.max_attempts=100 (nothing bounces) and
general.hostname=mailroom.test; then

  (A) adaptive   the defaults (shaping.adaptive = yes: 5 connections
                 first, grown while replies are fast and positive, cut and
                 the rate and messages per connection learned on 421/451)
                 with smtp.max_connections = 100, as in the test;
  (B) fixed N    shaping.adaptive = no, smtp.max_connections = N: every
                 destination gets N connections from the start, no learned
                 rate or per-connection limit (the retries do the rest).

Everything else is mailroom's default, including the governor's 200
delivery slots (governor.initial_slots), which bound the sessions of all
destinations together: three destinations of 100 do not all fit.

Before the rounds, the fast receiver alone gets 8,000 recipients (A's
settings): its speed on this machine, which bounds the fast share.

Per run: total completion time (mailroom's wall time, start to exit),
each receiver's finish time (its last acceptance, from mailroom's start)
and rate (its share over first to last acceptance), the 451 and 421 the
throttling receiver sent, the most connections each receiver had open,
deferrals and sessions from mailroom's summary, mailroom's CPU seconds
(user + system, from wait4) and the fast receiver's (from /proc: aiosmtpd
in one process uses at most one core).  Each run is checked: 50,000
delivered, none bounced, and each receiver accepted exactly its share,
each recipient once.  Then the ratio (B)/(A) of total completion time
within each round, the recipients each of slow and throttle accepted in
every 5 s from mailroom's start (when each got going), and mailroom's
destination lines (what the controller learned).  Everything stays on loopback; every process started
is stopped by PID (mailroom is killed at SHAPING_TIMEOUT).
"""
import json
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import free_port  # noqa: E402

MAILROOM = os.path.abspath(os.environ.get("MAILROOM_BIN",
                                          str(ROOT / "build" / "mailroom")))
RECEIVER = ROOT / "tests" / "integration" / "receiver.py"
PYTHON = "/usr/bin/python3"
SCALE = float(os.environ.get("SHAPING_SCALE", "1"))
TIMEOUT = float(os.environ.get("SHAPING_TIMEOUT", "600"))
TEMPLATE = ("From: news@sender.test\nTo: {{email}}\nSubject: Hello "
            "{{name}}\n\nDear {{name}},\nthis is for you alone.\n")
SHARES = {"fast": 30000, "throttle": 15000, "slow": 5000}
SOLO = 8000
COMMON = {"queue.retry_base": "1s", "queue.retry_max_interval": "2s",
          "queue.max_attempts": "100", "general.hostname": "mailroom.test"}
COMMON.update(x.split("=", 1) for x in
              os.environ.get("SHAPING_SET", "").split())
ADAPTIVE = {"smtp.max_connections": "100"}


def fixed(n):
    return {"shaping.adaptive": "no", "smtp.max_connections": str(n)}


# ---------------------------------------------------------------- helpers

def proc_cpu(pid):
    """User + system CPU seconds of a running process (/proc)."""
    try:
        f = pathlib.Path(f"/proc/{pid}/stat").read_text() \
            .rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Receiver:
    """One receiver.py process, started and stopped by PID."""

    def __init__(self, work, mode, host, **kw):
        self.mode = mode
        self.host = host
        self.port = free_port(host)
        self.stats_path = work / f"{mode}-{self.port}.json"
        argv = [PYTHON, str(RECEIVER), mode, "--listen",
                f"{host}:{self.port}", "--stats", str(self.stats_path)]
        for k, v in kw.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        self.err = open(work / f"{mode}-{self.port}.err", "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"receiver {mode} did not start: {line!r}")
        self.cpu = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def stop(self):
        """SIGTERM (the receiver writes its stats), wait, read them."""
        self.cpu = proc_cpu(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"receiver {self.mode} did not stop")
        self.err.close()
        return json.loads(self.stats_path.read_text())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def make_rows(spec, seed):
    """[(email, name)] for {domain: count}, shuffled (as the test's)."""
    rows = []
    for domain, n in spec.items():
        rows += [(f"u{i}@{domain}", f"Name{i}") for i in range(n)]
    random.Random(seed).shuffle(rows)
    return rows


def write_list(path, rows):
    with open(path, "w") as f:
        f.write("email,name\n")
        for e, n in rows:
            f.write(f"{e},{n}\n")


def run_mailroom(rundir, list_path, routes, opts):
    """Run `mailroom send`; return (rc, wall s, CPU s, start time.time(),
    stdout).  Killed by PID after TIMEOUT."""
    tpl = rundir / "template.eml"
    tpl.write_text(TEMPLATE)
    argv = [MAILROOM, "send", "--template", str(tpl), "--list",
            str(list_path), "--accounting", str(rundir / "accounting.csv"),
            "--reject-file", str(rundir / "rejects.csv"), "--no-progress"]
    for k, v in {**COMMON, **opts}.items():
        argv += ["-o", f"{k}={v}"]
    for domain, addr in routes.items():
        argv += ["--route", f"{domain}={addr}"]
    out = open(rundir / "mailroom.out", "w")
    err = open(rundir / "mailroom.err", "w")
    t_wall = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=rundir, stdout=out, stderr=err)
    killed = False
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if not killed and time.monotonic() - t0 > TIMEOUT:
                print(f"mailroom (PID {proc.pid}) still running after "
                      f"{TIMEOUT:.0f} s: stopping it", file=sys.stderr)
                proc.send_signal(signal.SIGTERM)
                killed = True
                kill_at = time.monotonic() + 10
            if killed and time.monotonic() > kill_at:
                proc.kill()
            time.sleep(0.02)
    except BaseException:
        # Interrupted (^C): do not leave mailroom running.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.close()
    err.close()
    rc = "timeout" if killed else proc.returncode
    return (rc, wall, ru.ru_utime + ru.ru_stime, t_wall,
            (rundir / "mailroom.out").read_text())


def summary(stdout):
    """{key: value} of the summary's lines (first of each key) and the
    destination lines."""
    d, dests = {}, []
    for line in stdout.splitlines():
        k, sep, v = line.partition(":")
        if not sep:
            continue
        if k == "destination":
            dests.append(v.strip())
        d.setdefault(k, v.strip())
    return d, dests


def num(s):
    try:
        return int(s.split()[0])
    except (AttributeError, IndexError, ValueError):
        return None


def window(stats):
    t = [x for x, _ in stats["accepted"]]
    return (min(t), max(t)) if t else (None, None)


# ------------------------------------------------------------------- runs

def one_run(work, name, opts, rows, spec):
    """One campaign over fresh receivers; a dict of the figures."""
    rundir = work / name.replace(" ", "-")
    rundir.mkdir()
    list_path = rundir / "list.csv"
    write_list(list_path, rows)
    recv = {}
    try:
        if "fast" in spec:
            recv["fast"] = Receiver(rundir, "fast", "127.0.0.3")
        if "slow" in spec:
            recv["slow"] = Receiver(rundir, "slow", "127.0.0.2", delay=0.3)
        if "throttle" in spec:
            recv["throttle"] = Receiver(rundir, "throttle", "127.0.0.2",
                                        per_conn=50, rate=600)
        routes = {f"{k}.test": r.address for k, r in recv.items()}
        rc, wall, cpu, t_start, out = run_mailroom(rundir, list_path,
                                                   routes, opts)
        stats = {k: r.stop() for k, r in recv.items()}
    finally:
        for r in recv.values():
            r.kill()
    s, dests = summary(out)
    problems = []
    if rc != 0:
        problems.append(f"exit {rc}")
    total = sum(spec.values())
    if num(s.get("delivered")) != total:
        problems.append(f"delivered {s.get('delivered')}")
    if num(s.get("bounced")) != 0:
        problems.append(f"bounced {s.get('bounced')}")
    r = {"run": name, "wall": wall, "cpu": cpu, "rc": rc,
         "deferrals": num(s.get("deferrals")),
         "sessions": num(s.get("sessions")), "dests": dests,
         "recv": {}}
    for k, st in stats.items():
        got = [a for _, a in st["accepted"]]
        want = {e for e, _ in rows if e.endswith(f"@{k}.test")}
        if len(got) != len(want) or set(got) != want:
            problems.append(f"{k}: {len(got)} accepted, "
                            f"{len(set(got))} distinct, {len(want)} wanted")
        a, b = window(st)
        per5 = [0] * (int((b - t_start) // 5) + 1 if b else 0)
        for t, _ in st["accepted"]:
            per5[int((t - t_start) // 5)] += 1
        r["recv"][k] = {
            "per5": per5,
            "end": (b - t_start) if b else None,
            "rate": len(got) / (b - a) if b and b > a else None,
            "451": len(st["deferred"]), "421": len(st["conn_421"]),
            "max_open": st["max_open"], "connections": st["connections"],
            "cpu": recv[k].cpu,
        }
    r["problems"] = problems
    if problems:
        err = (rundir / "mailroom.err").read_text()
        print(f"{name}: PROBLEMS {problems}\n{out[-2000:]}\n{err[-2000:]}",
              file=sys.stderr, flush=True)
    return r


# ----------------------------------------------------------------- report

def f1(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def report(rows, solo, fixed_ns, load0, load1, t_start):
    print(f"mailroom: {MAILROOM}")
    print("settings of every run: " +
          " ".join(f"{k}={v}" for k, v in COMMON.items()))
    print(f"load average at start: {load0}")
    print(f"load average at end:   {load1}")
    print(f"wall time of the benchmark: {time.monotonic() - t_start:.0f} s")
    sf = solo["recv"]["fast"]
    print(f"\nfast receiver alone, {SOLO_N:,} recipients, adaptive: "
          f"{f1(sf['rate'], '{:,.0f}')}/s, mailroom {solo['wall']:.2f} s, "
          f"receiver CPU {f1(sf['cpu'], '{:.2f}')} s, mailroom CPU "
          f"{solo['cpu']:.2f} s, {sf['max_open']} connections at most\n")
    print("| run | total s | fast end s | fast /s | slow end s | slow /s | "
          "throttle end s | throttle /s | 451 sent | 421 sent | deferrals "
          "| sessions | mailroom CPU s | fast receiver CPU s | "
          "most open fast/slow/throttle |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = r["recv"]
        print(f"| {r['run']} | {r['wall']:.1f} | "
              f"{f1(v['fast']['end'])} | {f1(v['fast']['rate'], '{:,.0f}')} | "
              f"{f1(v['slow']['end'])} | {f1(v['slow']['rate'], '{:,.0f}')} | "
              f"{f1(v['throttle']['end'])} | "
              f"{f1(v['throttle']['rate'], '{:,.0f}')} | "
              f"{v['throttle']['451']:,} | {v['throttle']['421']:,} | "
              f"{f1(r['deferrals'], '{:,}')} | {f1(r['sessions'], '{:,}')} | "
              f"{r['cpu']:.2f} | {f1(v['fast']['cpu'], '{:.2f}')} | "
              f"{v['fast']['max_open']}/{v['slow']['max_open']}/"
              f"{v['throttle']['max_open']} |")
    print()
    rounds = sorted({r["round"] for r in rows})
    for n in fixed_ns:
        ratios = []
        for p in rounds:
            a = [r for r in rows if r["round"] == p and r["kind"] == "A"]
            b = [r for r in rows if r["round"] == p and r["kind"] == n]
            if a and b:
                ratios.append(b[0]["wall"] / a[0]["wall"])
        if ratios:
            print(f"- total completion time (B fixed {n}) / (A adaptive): "
                  + ", ".join(f"**{x:.2f}**" for x in ratios)
                  + f" (round {', '.join(map(str, rounds))}; median "
                  f"{statistics.median(ratios):.2f})")
    print("\nrecipients accepted per 5 s from mailroom's start "
          "(slow; throttle):")
    for r in rows:
        print(f"  {r['run']}: {r['recv']['slow']['per5']}; "
              f"{r['recv']['throttle']['per5']}")
    print("\nmailroom's destination lines (what each run ended with):")
    for r in rows:
        for d in r["dests"]:
            print(f"  {r['run']}: {d}")
    bad = [(r["run"], r["problems"]) for r in rows + [solo]
           if r["problems"]]
    if bad:
        print("\nPROBLEMS:", bad)
    return 1 if bad else 0


SOLO_N = max(1, round(SOLO * SCALE))


def main():
    t_start = time.monotonic()
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    fixed_ns = [int(x) for x in sys.argv[2:]] or [20, 100]
    if not os.access(MAILROOM, os.X_OK):
        sys.exit(f"shaping.py: no mailroom binary at {MAILROOM} "
                 f"(build it, or set MAILROOM_BIN)")
    load0 = pathlib.Path("/proc/loadavg").read_text().strip()
    print(f"load average at start: {load0}", file=sys.stderr, flush=True)
    spec = {f"{k}.test": max(1, round(n * SCALE)) for k, n in SHARES.items()}
    rows_list = make_rows(spec, seed=1)
    work = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-bench-shaping-"))
    try:
        solo = one_run(work, "solo fast", ADAPTIVE,
                       make_rows({"fast.test": SOLO_N}, seed=2),
                       {"fast": SOLO_N})
        print(f"solo fast: {solo['wall']:.2f} s", file=sys.stderr,
              flush=True)
        kinds = [("A", "(A) adaptive, max 100", ADAPTIVE)] + \
            [(n, f"(B) fixed {n}", fixed(n)) for n in fixed_ns]
        rows = []
        for p in range(1, pairs + 1):
            order = kinds if p % 2 else kinds[::-1]
            for kind, label, opts in order:
                r = one_run(work, f"{p} {label}", opts, rows_list,
                            {k.split(".")[0]: n for k, n in spec.items()})
                r["round"], r["kind"] = p, kind
                rows.append(r)
                print(f"{r['run']}: {r['wall']:.1f} s, "
                      f"{r['deferrals']} deferrals, "
                      f"{r['sessions']} sessions", file=sys.stderr,
                      flush=True)
        load1 = pathlib.Path("/proc/loadavg").read_text().strip()
        rc = report(rows, solo, fixed_ns, load0, load1, t_start)
    finally:
        if os.environ.get("SHAPING_KEEP"):
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
