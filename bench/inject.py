"""bench/inject.py - SMTP injection (issue 6): mailroom daemon against a
Postfix relay, both fed by smtp-source and relaying to smtp-sink, in one
run.

    /usr/bin/python3 bench/inject.py [--messages N] [--sessions 20,50]
                                     [--rounds 2] [--size 1024] ...

    MAILROOM_BIN   the mailroom binary (default build/mailroom); it is
                   copied into the work directory first, so a rebuild
                   during the run does not change what is measured.

Runs as root (Postfix is started as root and drops privileges; so does
smtp-sink).  For every session count S (smtp-source -s S) and every
round, each server gets one run (round 1: mailroom then Postfix, round 2
the other way round).  A run starts everything fresh:

  sink      /usr/sbin/smtp-sink -c -u nobody ADDR:PORT 1024, its running
            counter (sess=, quit=, mesg=, updated at every final dot) in
            a file the benchmark polls every 10 ms; 127.0.0.2 for
            mailroom, 127.0.0.3 for Postfix;
  mailroom  `mailroom daemon --store W/store.db --smtp-listen
            127.0.0.1:P --route '*=127.0.0.2:SINK' -o general.hostname=
            bench.test -o general.log_level=info` (everything else at its
            defaults: one delivery loop on 2 CPUs, 20 connections to the
            sink at most); info level so that the spool's closing line
            gives its group commit (syncs, messages synced);
  Postfix   a private instance: `postfix -c W/etc start` with its own
            main.cf (queue_directory, data_directory, maillog_file in W;
            smtpd on 127.0.0.1:P, mynetworks = 127.0.0.0/8, relayhost =
            [127.0.0.3]:SINK, mydestination empty) and master.cf
            (Debian's, smtp inet line replaced, chroot off).  Every
            performance parameter at Postfix's defaults
            (default_destination_concurrency_limit = 20, in_flow_delay =
            1s, ...) unless given with --postfix-opt.  As root, `postfix
            -c DIR` needs no alternate_config_directories: the system's
            /etc/postfix is only read (master.cf), never written;
  load      /usr/sbin/smtp-source -d -s S -m N -l SIZE -f from@example.test
            -t to@example.test 127.0.0.1:P (no pipelining: one command,
            one reply).

Per run: injection time (smtp-source's wall time), end to end (from
smtp-source's start until the sink has counted all N messages), both as
msg/s; CPU seconds (user + system) over that span of the server (the
daemon's process; Postfix's master, its live children and those it
reaped), of smtp-source and of the sink; mailroom's group commit
(messages per fdatasync round, from its log).  Each run is checked: the
sink counts exactly N (again after a 1 s grace: no duplicates),
smtp-source reported no error, mailroom's spool closes with no live
message, Postfix's queue is empty.  A run that stalls (no message at the
sink for --stall seconds) or exceeds --timeout is stopped and the
benchmark ends with what it saw and the work directory kept.

Everything stays on loopback; every process started is stopped by PID.
"""
import argparse
import hashlib
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from procstat import cpu_seconds, descendants, stat_fields  # noqa: E402

MAILROOM = os.environ.get("MAILROOM_BIN", str(ROOT / "build" / "mailroom"))
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
FROM, TO = "from@example.test", "to@example.test"
POLL = 0.01


class RunFailed(Exception):
    pass


# ----------------------------------------------------------------- helpers

def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, proc=None, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RunFailed(f"{proc.args[0]} exited ({proc.returncode}) "
                            f"before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RunFailed(f"nothing listens on {host}:{port} after {timeout} s")


def alive(pid):
    return stat_fields(pid) is not None and stat_fields(pid)[0] != "Z"


def kill_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_proc(proc, sig=signal.SIGTERM, timeout=15):
    """Stop a child we started, by its PID: sig, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def sink_count(path):
    """The sink's last mesg= counter (its -c output, \\r separated)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 200))
            tail = f.read()
    except OSError:
        return 0
    m = re.findall(rb"mesg=(\d+)", tail)
    return int(m[-1]) if m else 0


def fmt(x, nd=0):
    return f"{x:,.{nd}f}"


# ------------------------------------------------------------------ servers

class Sink:
    def __init__(self, work, addr):
        self.addr, self.port = addr, free_port(addr)
        self.out = work / f"sink-{addr}.out"
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(
                [SMTP_SINK, "-c", "-u", "nobody", f"{addr}:{self.port}",
                 "1024"], stdin=subprocess.DEVNULL, stdout=f,
                stderr=subprocess.STDOUT)
        wait_port(addr, self.port, self.proc)

    def count(self):
        return sink_count(self.out)

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        stop_proc(self.proc)


class Mailroom:
    name = "mailroom"

    def __init__(self, work, binary, sink_addr, sink_port, log_level):
        self.work = work
        self.port = free_port()
        self.err = work / "mailroom.err"
        out = work / "mailroom.out"
        with open(out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(
                [binary, "daemon", "--store", str(work / "store.db"),
                 "--smtp-listen", f"127.0.0.1:{self.port}", "--route",
                 f"*={sink_addr}:{sink_port}",
                 "-o", "general.hostname=bench.test",
                 "-o", f"general.log_level={log_level}"],
                stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        deadline = time.monotonic() + 15
        while "smtp-listen:" not in out.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop_proc(self.proc)
                raise RunFailed("mailroom daemon did not start: " +
                                self.err.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        wait_port("127.0.0.1", self.port, self.proc)

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        stop_proc(self.proc, timeout=30)

    def check(self):
        """After stop(): the spool's closing line, and its group commit."""
        log = self.err.read_text(errors="replace")
        m = re.search(r"event=close .*messages=(\d+) syncs=(\d+) "
                      r"synced=(\d+)", log)
        bad = [x for x in log.splitlines()
               if len(x.split()) > 2 and x.split()[1] in ("err", "crit")]
        if not m:
            return {"problems": ["no spool close line in the log "
                                 "(crashed, or log level above info)"],
                    "errors_logged": len(bad)}
        live, syncs, synced = map(int, m.groups())
        r = {"commit": synced / syncs if syncs else 0.0, "syncs": syncs,
             "synced": synced, "errors_logged": len(bad), "problems": []}
        if live:
            r["problems"].append(f"the spool closed with {live} live "
                                 f"messages")
        return r


class Postfix:
    name = "Postfix"

    def __init__(self, work, sink_addr, sink_port, extra):
        self.work = work
        self.port = free_port()
        etc, q, data = work / "etc", work / "queue", work / "data"
        for d in (etc, q, data):
            d.mkdir(parents=True)
        shutil.chown(data, "postfix")
        self.master_pid = None
        lines = []
        for line in pathlib.Path("/etc/postfix/master.cf").read_text() \
                .splitlines():
            f = line.split()
            if len(f) >= 8 and f[0] == "smtp" and f[1] == "inet":
                lines.append(f"127.0.0.1:{self.port} inet n - n - - smtpd")
                continue
            if len(f) >= 8 and not line[0].isspace() and \
                    not line.startswith("#") and \
                    f[1] in ("inet", "unix", "unix-dgram", "fifo", "pass"):
                f[4] = "n"          # no chroot: nothing to copy into it
                line = " ".join(f)
            lines.append(line)
        (etc / "master.cf").write_text("\n".join(lines) + "\n")
        main = [
            "compatibility_level = 3.6",
            f"queue_directory = {q}",
            f"data_directory = {data}",
            f"maillog_file = {work}/maillog",
            f"maillog_file_prefixes = {work}",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "myhostname = postfix.bench.test",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            f"relayhost = [{sink_addr}]:{sink_port}",
        ] + list(extra)
        (etc / "main.cf").write_text("\n".join(main) + "\n")
        self.etc = etc
        p = subprocess.run([POSTFIX, "-c", str(etc), "start"],
                           capture_output=True, text=True, timeout=60)
        pidfile = q / "pid" / "master.pid"
        if pidfile.exists():
            self.master_pid = int(pidfile.read_text().split()[0])
        if p.returncode != 0 or self.master_pid is None:
            self.stop()
            raise RunFailed(f"postfix start failed ({p.returncode}): "
                            f"{p.stdout}{p.stderr}")
        wait_port("127.0.0.1", self.port)

    def cpu(self):
        return cpu_seconds(self.master_pid, tree=True)

    def check(self):
        r = {"problems": []}
        try:
            p = subprocess.run([POSTQUEUE, "-c", str(self.etc), "-p"],
                               capture_output=True, text=True, timeout=30)
            if "Mail queue is empty" not in p.stdout:
                r["problems"].append("Postfix's queue is not empty: " +
                                     p.stdout[-300:])
        except subprocess.TimeoutExpired:
            r["problems"].append("postqueue -p timed out")
        return r

    def stop(self):
        """`postfix stop` (SIGTERM to our master, by its pid file), then
        SIGKILL by PID to whatever of this instance is left."""
        if self.master_pid is None:
            return
        kids = descendants(self.master_pid)
        try:
            subprocess.run([POSTFIX, "-c", str(self.etc), "stop"],
                           capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 15
        while alive(self.master_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in [self.master_pid] + kids:
            if alive(pid):
                kill_pid(pid, signal.SIGKILL)
        self.master_pid = None


# --------------------------------------------------------------------- run

def one_run(args, kind, sessions, work, binary):
    n = args.messages
    work.mkdir(parents=True)
    os.chmod(work, 0o755)
    sink_addr = "127.0.0.2" if kind == "mailroom" else "127.0.0.3"
    sink = server = src = None
    r = {"server": kind, "sessions": sessions, "problems": []}
    try:
        sink = Sink(work, sink_addr)
        if kind == "mailroom":
            server = Mailroom(work, binary, sink_addr, sink.port,
                              args.log_level)
        else:
            server = Postfix(work, sink_addr, sink.port, args.postfix_opt)
        base = sink.count()
        c0, k0 = server.cpu(), sink.cpu()
        src_err = open(work / "smtp-source.err", "wb")
        t0 = time.monotonic()
        src = subprocess.Popen(
            [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(n), "-l",
             str(args.size), "-f", FROM, "-t", TO,
             f"127.0.0.1:{server.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=src_err)
        src_err.close()
        t_inj = t_e2e = None
        src_cpu = None
        last, t_last = base, t0
        while True:
            now = time.monotonic()
            if t_inj is None:
                pid, status, ru = os.wait4(src.pid, os.WNOHANG)
                if pid:
                    t_inj = now - t0
                    src.returncode = os.waitstatus_to_exitcode(status)
                    src_cpu = ru.ru_utime + ru.ru_stime
            got = sink.count() - base
            if got >= n:
                t_e2e = now - t0
                break
            if got != last:
                last, t_last = got, now
            if now - t0 > args.timeout:
                raise RunFailed(f"timeout: {args.timeout} s, the sink has "
                                f"{got} of {n}, smtp-source "
                                f"{'done' if t_inj else 'still running'}")
            if t_inj is not None and now - max(t_last, t0 + t_inj) > \
                    args.stall:
                raise RunFailed(f"stalled: smtp-source finished after "
                                f"{t_inj:.2f} s, the sink has {got} of {n} "
                                f"and nothing more for {args.stall} s")
            time.sleep(POLL)
        r["server_cpu"] = server.cpu() - c0
        r["sink_cpu"] = sink.cpu() - k0
        while t_inj is None:    # all at the sink before smtp-source quit
            pid, status, ru = os.wait4(src.pid, os.WNOHANG)
            if pid:
                t_inj = time.monotonic() - t0
                src.returncode = os.waitstatus_to_exitcode(status)
                src_cpu = ru.ru_utime + ru.ru_stime
            elif time.monotonic() - t0 > args.timeout:
                raise RunFailed("smtp-source did not exit, though the "
                                "sink has every message")
            else:
                time.sleep(POLL)
        time.sleep(1)           # anything more is a duplicate
        r["delivered"] = sink.count() - base
        r.update(inject_s=t_inj, e2e_s=t_e2e, inject_rate=n / t_inj,
                 e2e_rate=n / t_e2e, source_cpu=src_cpu)
        errs = (work / "smtp-source.err").read_text(errors="replace")
        if src.returncode != 0 or errs.strip():
            r["problems"].append(f"smtp-source exit {src.returncode}: "
                                 f"{errs.strip()[:300]}")
        if r["delivered"] != n:
            r["problems"].append(f"the sink counted {r['delivered']} "
                                 f"messages, not {n}")
        if kind == "Postfix":
            r["problems"] += server.check()["problems"]
        server.stop()
        if kind == "mailroom":
            c = server.check()
            r["problems"] += c.pop("problems")
            r.update(c)
        return r
    except RunFailed as e:
        msg = f"{kind}, -s {sessions}: {e.args[0]}"
        if isinstance(server, Mailroom):
            server.stop()
            c = server.check()
            msg += "; after SIGTERM: " + ("; ".join(c["problems"]) or
                                          "the spool closed empty")
        e.args = (msg,)
        raise
    finally:
        if src is not None and src.returncode is None:
            kill_pid(src.pid, signal.SIGKILL)
            try:
                os.waitpid(src.pid, 0)
            except ChildProcessError:
                pass
            src.returncode = -9
        if server is not None:
            server.stop()
        if sink is not None:
            sink.stop()


def report(rows, args, info):
    n = args.messages
    print(f"\n{n:,} messages of {args.size} bytes (smtp-source -l), "
          f"smtp-source -d; {info}\n")
    print("| run | server | sessions | injection s | injected msg/s | "
          "end to end s | end to end msg/s | server CPU s | smtp-source "
          "CPU s | sink CPU s | spool msgs/sync |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        commit = fmt(r["commit"], 1) if "commit" in r else "-"
        print(f"| {r['round']} | {r['server']} | {r['sessions']} | "
              f"{r['inject_s']:.2f} | {fmt(r['inject_rate'])} | "
              f"{r['e2e_s']:.2f} | {fmt(r['e2e_rate'])} | "
              f"{r['server_cpu']:.2f} | {r['source_cpu']:.2f} | "
              f"{r['sink_cpu']:.2f} | {commit} |")
    print()
    for s in args.sessions:
        m = [r for r in rows if r["sessions"] == s and
             r["server"] == "mailroom"]
        p = [r for r in rows if r["sessions"] == s and
             r["server"] == "Postfix"]
        if not m or not p:
            continue
        me = statistics.median(r["e2e_rate"] for r in m)
        pe = statistics.median(r["e2e_rate"] for r in p)
        mi = statistics.median(r["inject_rate"] for r in m)
        pi = statistics.median(r["inject_rate"] for r in p)
        per_round = ", ".join(
            f"{a['e2e_rate'] / b['e2e_rate']:.1f}"
            for a, b in zip(m, p))
        verdict = "met" if me / pe >= 5 else "NOT met"
        print(f"- -s {s}: end to end mailroom/Postfix **{me / pe:.1f}x** "
              f"(medians {fmt(me)} / {fmt(pe)} msg/s; per round "
              f"{per_round}); target >= 5x: {verdict}. Injection alone "
              f"{mi / pi:.1f}x ({fmt(mi)} / {fmt(pi)} msg/s).")
        mc = statistics.median(r["server_cpu"] / n * 1e6 for r in m)
        pc = statistics.median(r["server_cpu"] / n * 1e6 for r in p)
        print(f"  CPU per message: mailroom {mc:.0f} us, Postfix "
              f"{pc:.0f} us (medians).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", "-m", type=int, default=20000)
    ap.add_argument("--sessions", "-s", default="20,50",
                    help="smtp-source -s values, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--servers", default="mailroom,Postfix",
                    help="which servers to run (for checking the bench)")
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds a run may take")
    ap.add_argument("--stall", type=float, default=30,
                    help="seconds without a message at the sink, once "
                         "injection is done, that fail a run")
    ap.add_argument("--log-level", default="info",
                    help="mailroom's general.log_level (info shows the "
                         "spool's group commit)")
    ap.add_argument("--postfix-opt", action="append", default=[],
                    metavar="'key = value'", help="extra main.cf line")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory")
    args = ap.parse_args()
    args.sessions = [int(x) for x in args.sessions.split(",")]
    servers = [s.strip() for s in args.servers.split(",")]
    if os.geteuid() != 0:
        sys.exit("inject.py: run as root (Postfix and smtp-sink)")
    for tool in (SMTP_SOURCE, SMTP_SINK, POSTFIX):
        if not os.access(tool, os.X_OK):
            sys.exit(f"inject.py: {tool} missing (apt-get install postfix)")
    if "mailroom" in servers and not os.access(MAILROOM, os.X_OK):
        sys.exit(f"inject.py: no mailroom binary at {MAILROOM}")

    t_start = time.monotonic()
    load0 = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    work = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-bench-inject-"))
    os.chmod(work, 0o755)
    binary = None
    info = ""
    if "mailroom" in servers:
        binary = str(work / "mailroom")
        shutil.copy2(MAILROOM, binary)
        digest = hashlib.sha256(pathlib.Path(binary).read_bytes()) \
            .hexdigest()[:12]
        mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(
            os.stat(MAILROOM).st_mtime))
        info = (f"mailroom {MAILROOM} (built {mtime} UTC, sha256 "
                f"{digest}...), ")
    pv = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                        capture_output=True, text=True).stdout.strip()
    info += (f"Postfix {pv}; {os.cpu_count()} CPUs, Linux "
             f"{os.uname().release}; load average {' '.join(load0)} at "
             f"the start")
    print(f"work directory {work}; {info}", file=sys.stderr)
    rows, ok = [], False
    try:
        i = 0
        for s in args.sessions:
            for rnd in range(1, args.rounds + 1):
                order = servers if rnd % 2 else list(reversed(servers))
                for kind in order:
                    i += 1
                    print(f"== run {i}: {kind}, -s {s}, round {rnd}",
                          file=sys.stderr)
                    r = one_run(args, kind, s, work / f"{i}-{kind}-s{s}",
                                binary)
                    r["round"] = rnd
                    print(f"   injection {r['inject_s']:.2f} s, end to end "
                          f"{r['e2e_s']:.2f} s ({fmt(r['e2e_rate'])} "
                          f"msg/s)", file=sys.stderr)
                    if r["problems"]:
                        raise RunFailed(f"{kind}, -s {s}: " +
                                        "; ".join(r["problems"]))
                    rows.append(r)
        ok = True
    except RunFailed as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        print(f"work directory kept: {work}", file=sys.stderr)
    finally:
        load1 = pathlib.Path("/proc/loadavg").read_text().split()[:3]
        if rows:
            report(rows, args, info)
            print(f"- load average at the end {' '.join(load1)}; wall time "
                  f"{time.monotonic() - t_start:.0f} s")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
