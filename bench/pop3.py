"""bench/pop3.py - the POP3 edge proxy against Dovecot alone, in one run.

    /usr/bin/python3 bench/pop3.py [USERS] [SECONDS]     (run by pop3.sh)

A tuned Dovecot (tests/integration/dovecot.py) with USERS users (default
1,000), each u<i> with password "pw".  bench/pop3_load (C, epoll) plays
the clients; a check is connect, USER, PASS, STAT, QUIT.

  (a) schedule, straight to Dovecot: every user checks every 5 s for
      SECONDS (default 60); 1 % of the users get a message (LMTP) in the
      middle of the run;
  (c) the same schedule through `mailroom pop3-proxy` (interval 300 s,
      Dovecot's push notifications to its HTTP endpoint);
  max rate: 50 clients in a closed loop for 10 s, (a) at Dovecot, (c) at
      the proxy with every user's mailbox known empty (answered locally).

Reported: backend logins (Dovecot's log), checks done and per second,
p50/p99 latency, and the CPU seconds Dovecot's processes used.  The
nginx mail proxy / perdition run and the 40 ms latency run of issue 4 are
not here yet.  Everything stays on 127.0.0.1; every process started is
stopped by PID.
"""
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import free_port  # noqa: E402
from dovecot import Dovecot, _descendants  # noqa: E402

LOAD = None


def cpu_seconds(pid):
    """User + system CPU seconds of pid and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid] + _descendants(pid):
        try:
            fields = pathlib.Path(f"/proc/{p}/stat").read_text() \
                .rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 (1-based), here 11-14
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def load(*args):
    out = subprocess.run([LOAD, *map(str, args)], capture_output=True,
                         text=True, check=True, timeout=600).stdout
    return dict(kv.split("=") for kv in out.split())


def deliver_later(d, users, at):
    def run():
        time.sleep(at)
        for u in users:
            d.deliver(u, subject="new")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def scheduled(d, port, n, seconds, mail_users):
    logins0 = d.pop3_logins()
    cpu0 = cpu_seconds(d.proc.pid)
    t = deliver_later(d, mail_users, seconds / 2)
    r = load("-i", 5, "-d", seconds, "127.0.0.1", port, n)
    t.join()
    time.sleep(1)
    r["backend_logins"] = d.pop3_logins() - logins0
    r["dovecot_cpu_s"] = round(cpu_seconds(d.proc.pid) - cpu0, 2)
    return r


def closed_loop(d, port, n):
    cpu0 = cpu_seconds(d.proc.pid)
    logins0 = d.pop3_logins()
    r = load("-c", 50, "-d", 10, "127.0.0.1", port, n)
    time.sleep(1)
    r["backend_logins"] = d.pop3_logins() - logins0
    r["dovecot_cpu_s"] = round(cpu_seconds(d.proc.pid) - cpu0, 2)
    return r


def main():
    global LOAD
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    work = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-bench-pop3-"))
    LOAD = str(work / "pop3_load")
    subprocess.run(["cc", "-O2", "-o", LOAD, str(ROOT / "bench" /
                    "pop3_load.c")], check=True)
    http_port = free_port()
    users = {f"u{i}": "pw" for i in range(n)}
    mail_users = [f"u{i}" for i in range(0, n, 100)]      # 1 %
    d = Dovecot(work, users=users, tuned=True, auth_penalty=False,
                push_url=f"http://127.0.0.1:{http_port}/push",
                max_userip_connections=100000)
    proxy = None
    try:
        for u in mail_users:
            d.enable_push(u)
        rows = {}
        rows["(a) Dovecot, schedule"] = scheduled(d, d.pop3_port, n, seconds,
                                                  mail_users)
        # Empty the mailboxes again for the proxy's run.
        for u in mail_users:
            for f in (pathlib.Path(d.home(u)) / "Maildir" / "new").glob("*"):
                f.unlink()
        proxy = subprocess.Popen(
            [str(ROOT / "build" / "mailroom"), "pop3-proxy", "--listen",
             "127.0.0.1:0", "--backend", f"127.0.0.1:{d.pop3_port}",
             "--interval", "300", "--http-listen",
             f"127.0.0.1:{http_port}", "-o", "general.log_level=warn",
             "-o", "pop3_proxy.fast_checks=0"],
            stdout=subprocess.PIPE, text=True)
        pport = int(proxy.stdout.readline().split(":")[-1])
        proxy.stdout.readline()
        rows["(c) mailroom, schedule"] = scheduled(d, pport, n, seconds,
                                                   mail_users)
        rows["(a) Dovecot, 50 clients, closed loop"] = closed_loop(
            d, d.pop3_port, n)
        rows["(c) mailroom, 50 clients, closed loop"] = closed_loop(
            d, pport, n)
        print(f"\n{n} users; schedule: every user every 5 s for {seconds}"
              f" s, {len(mail_users)} get a message half-way\n")
        print("| run | checks | errors | checks/s | p50 ms | p99 ms | "
              "backend logins | Dovecot CPU s |")
        print("|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            print(f"| {name} | {r['checks']} | {r['errors']} | {r['rate']} "
                  f"| {r['p50_ms']} | {r['p99_ms']} | {r['backend_logins']}"
                  f" | {r['dovecot_cpu_s']} |")
        a, c = rows["(a) Dovecot, schedule"], rows["(c) mailroom, schedule"]
        la = rows["(a) Dovecot, 50 clients, closed loop"]
        lc = rows["(c) mailroom, 50 clients, closed loop"]
        print(f"\n- backend logins (c)/(a): "
              f"{c['backend_logins'] / max(a['backend_logins'], 1):.3f} "
              f"(target <= 0.10)")
        print(f"- Dovecot CPU (c)/(a): "
              f"{c['dovecot_cpu_s'] / max(a['dovecot_cpu_s'], 0.01):.3f} "
              f"(target <= 0.15)")
        print(f"- closed loop checks/s (c)/(a): "
              f"{float(lc['rate']) / max(float(la['rate']), 1):.1f} "
              f"(target >= 10, p99 <= 5 ms: {lc['p99_ms']} ms)")
        print(f"- machine: {os.cpu_count()} CPUs, {os.uname().release}")
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=10)
        d.stop()


if __name__ == "__main__":
    main()
