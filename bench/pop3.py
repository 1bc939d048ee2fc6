"""bench/pop3.py - the POP3 edge proxy against Dovecot alone and behind
the proxies operators deploy today, in one run.

    /usr/bin/python3 bench/pop3.py [USERS] [SECONDS]     (run by pop3.sh)

    MAILROOM_BIN   the mailroom binary (default build/mailroom)

A tuned Dovecot (tests/integration/dovecot.py) with USERS users (default
1,000), each u<i> with password "pw".  bench/pop3_load (C, epoll) plays
the clients; a check is connect, USER, PASS, STAT, QUIT.  Rows:

  (a) schedule, straight to Dovecot: every user checks every 5 s for
      SECONDS (default 60); 1 % of the users get a message (LMTP) in the
      middle of the run;
  (b) the same schedule through nginx's mail proxy (ngx_mail_module,
      worker_processes auto, auth_http answered by the same nginx's own
      http server: no script in the path), and through perdition
      (perdition.pop3 in the foreground, one process per session, the
      backend given with -s/-p, no user map, 1,024 descriptors);
  (c) the same schedule through `mailroom pop3-proxy` (interval 300 s,
      Dovecot's push notifications to its HTTP endpoint);
  closed loop: 50 clients for 10 s, (a), (b) and (c), for (c) with every
      user's mailbox known empty (answered locally) but the 1 % with mail;
  40 ms: bench/delay_relay (C, epoll) holds every chunk 20 ms each way
      between the client side and Dovecot (this kernel has no netem, so
      the latency is added in userspace); the schedule again (a')
      through it straight to Dovecot, and (c') with a fresh mailroom near
      the clients whose backend is behind the relay.  A round trip
      through the relay is measured first.

Reported: backend logins (Dovecot's log), checks done and per second,
p50/p99 latency, and the CPU seconds Dovecot's processes and the proxy's
processes used; then the ratios the issue sets as targets.  Mailboxes
are emptied between runs.  Everything stays on 127.0.0.1; every process
started is stopped by PID.
"""
import os
import pathlib
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import free_port  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from procstat import cmdline, cpu_seconds as _cpu, descendants  # noqa: E402

MAILROOM = os.environ.get("MAILROOM_BIN", str(ROOT / "build" / "mailroom"))
NGINX = "/usr/sbin/nginx"
NGINX_MAIL = "/usr/lib/nginx/modules/ngx_mail_module.so"
PERDITION = "/usr/sbin/perdition.pop3"
DELAY_MS = 20            # each way: 40 ms round trip
CLOSED_CONC = 50
CLOSED_SECONDS = 10

LOAD = None
RELAY = None


# ----------------------------------------------------------------- helpers

def cpu_seconds(pid):
    """User + system CPU seconds of pid and its descendants (and of the
    children they reaped)."""
    return _cpu(pid, tree=True)


def compile_c(work, name):
    out = str(work / name)
    subprocess.run(["cc", "-O2", "-pthread", "-o", out,
                    str(ROOT / "bench" / f"{name}.c")], check=True)
    return out


def load(*args):
    out = subprocess.run([LOAD, *map(str, args)], capture_output=True,
                         text=True, check=True, timeout=600).stdout
    return dict(kv.split("=") for kv in out.split())


def wait_greeting(port, proc, timeout=10.0):
    """Wait until something on port answers with a +OK greeting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=2) as s, \
                    s.makefile("rb") as f:
                if f.readline().startswith(b"+OK"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not greet on port {port}")


def stop(proc, sig=signal.SIGTERM):
    """Stop proc by PID, then any descendant of it still alive (by PID,
    checked to still run the same program)."""
    if proc is None or proc.poll() is not None:
        return
    kids = [(p, cmdline(p)) for p in descendants(proc.pid)]
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    for pid, cmd in kids:
        while cmd and cmdline(pid) == cmd:
            if time.monotonic() >= deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                break
            time.sleep(0.05)


def empty_mailboxes(d, users):
    """Remove every message of users (Dovecot moves new/ to cur/)."""
    for u in users:
        for sub in ("new", "cur"):
            for f in (pathlib.Path(d.home(u)) / "Maildir" / sub).glob("*"):
                f.unlink()


def deliver_later(d, users, at):
    def run():
        time.sleep(at)
        for u in users:
            d.deliver(u, subject="new")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ----------------------------------------------------------------- proxies

def start_nginx(work, backend_port):
    """nginx's mail proxy, POP3 USER/PASS passed through to Dovecot.
    auth_http asks the same nginx's http server, which answers from its
    configuration (Auth-Status, Auth-Server, Auth-Port: all the mail
    module needs from a good answer; the password goes on unchanged)."""
    top = work / "nginx"
    (top / "tmp").mkdir(parents=True, exist_ok=True)
    mail_port, auth_port = free_port(), free_port()
    conf = top / "nginx.conf"
    conf.write_text(f"""\
load_module {NGINX_MAIL};
daemon off;
worker_processes auto;
pid {top}/nginx.pid;
error_log {top}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {top}/tmp;
  proxy_temp_path {top}/tmp;
  fastcgi_temp_path {top}/tmp;
  uwsgi_temp_path {top}/tmp;
  scgi_temp_path {top}/tmp;
  server {{
    listen 127.0.0.1:{auth_port};
    location = /auth {{
      add_header Auth-Status OK;
      add_header Auth-Server 127.0.0.1;
      add_header Auth-Port {backend_port};
      return 204;
    }}
  }}
}}
mail {{
  auth_http 127.0.0.1:{auth_port}/auth;
  server {{
    listen 127.0.0.1:{mail_port};
    protocol pop3;
    proxy on;
    pop3_auth plain;
  }}
}}
""")
    out = open(top / "nginx.out", "wb")
    proc = subprocess.Popen([NGINX, "-p", str(top), "-c", str(conf), "-e",
                             str(top / "error.log")],
                            stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT)
    out.close()
    try:
        wait_greeting(mail_port, proc)
    except Exception:
        stop(proc)
        raise
    return proc, mail_port


def start_perdition(work, backend_port):
    """perdition.pop3 in the foreground, every login to Dovecot: no
    configuration file, no user map (-M ''), no TLS, no host or port
    name lookups (-n).  Its descriptor limit is 1,024, the soft limit
    systemd gives a service: perdition's child for each connection
    spends time in proportion to the limit (on this machine's 20,000 a
    check costs it about 2.5 times the CPU)."""
    port = free_port()
    out = open(work / "perdition.out", "wb")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    proc = subprocess.Popen(
        [PERDITION, "--no_daemon", "-f", "", "--pid_file", "",
         "-b", "127.0.0.1", "-l", str(port), "-s", "127.0.0.1",
         "-p", str(backend_port), "-M", "", "--ssl_mode", "none", "-n"],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        preexec_fn=limit)
    out.close()
    try:
        wait_greeting(port, proc)
    except Exception:
        stop(proc)
        raise
    return proc, port


def start_mailroom(backend_port, http_port):
    proc = subprocess.Popen(
        [MAILROOM, "pop3-proxy", "--listen", "127.0.0.1:0", "--backend",
         f"127.0.0.1:{backend_port}", "--interval", "300", "--http-listen",
         f"127.0.0.1:{http_port}", "-o", "general.log_level=warn",
         "-o", "pop3_proxy.fast_checks=0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split(":")[-1])
        proc.stdout.readline()          # the HTTP listener
    except ValueError:
        stop(proc)
        raise RuntimeError("mailroom pop3-proxy did not start")
    return proc, port


def start_relay(backend_port):
    proc = subprocess.Popen([RELAY, "-d", str(DELAY_MS), "127.0.0.1", "0",
                             "127.0.0.1", str(backend_port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline().split(":")[-1])
    except ValueError:
        stop(proc)
        raise RuntimeError("delay_relay did not start")
    return proc, port


def round_trips(port, n=7):
    """(ms from connect to greeting, median ms of a CAPA round trip)."""
    def until(s, end):
        buf = b""
        while not buf.endswith(end):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError(f"port {port} closed the connection")
            buf += chunk

    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        until(s, b"\r\n")
        greeting = (time.monotonic() - t0) * 1000
        rtts = []
        for _ in range(n):
            t = time.monotonic()
            s.sendall(b"CAPA\r\n")
            until(s, b"\r\n.\r\n")
            rtts.append((time.monotonic() - t) * 1000)
        s.sendall(b"QUIT\r\n")
        until(s, b"\r\n")
    return greeting, statistics.median(rtts)


# ------------------------------------------------------------------- runs

def measure(d, proxy, body):
    """Run body() and add backend logins and CPU seconds to its row."""
    logins0 = d.pop3_logins()
    dcpu0 = cpu_seconds(d.proc.pid)
    pcpu0 = cpu_seconds(proxy.pid) if proxy else None
    r = body()
    time.sleep(1)           # Dovecot's log lines come a moment later
    r["backend_logins"] = d.pop3_logins() - logins0
    r["dovecot_cpu_s"] = round(cpu_seconds(d.proc.pid) - dcpu0, 2)
    r["proxy_cpu_s"] = (round(cpu_seconds(proxy.pid) - pcpu0, 2)
                        if proxy else None)
    return r


def scheduled(d, port, n, seconds, mail_users, proxy=None):
    empty_mailboxes(d, mail_users)

    def body():
        t = deliver_later(d, mail_users, seconds / 2)
        r = load("-i", 5, "-d", seconds, "127.0.0.1", port, n)
        t.join()
        return r
    return measure(d, proxy, body)


def closed_loop(d, port, n, proxy=None):
    return measure(d, proxy, lambda: load("-c", CLOSED_CONC, "-d",
                                          CLOSED_SECONDS, "127.0.0.1", port,
                                          n))


def ratio(x, y, floor):
    return float(x) / max(float(y), floor)


def report(rows, n, seconds, mail_users, relay_check, t_start):
    print(f"\n{n} users; schedule: every user every 5 s for {seconds} s, "
          f"{len(mail_users)} get a message half-way; closed loop: "
          f"{CLOSED_CONC} clients for {CLOSED_SECONDS} s")
    print(f"machine: {os.cpu_count()} CPUs, Linux {os.uname().release}; "
          f"load generator, proxies and Dovecot share them")
    greet, rtt, direct, relay_cpu = relay_check
    print(f"delay relay ({DELAY_MS} ms each way): CAPA round trip "
          f"{rtt:.2f} ms through it, {direct:.2f} ms direct; connect to "
          f"greeting {greet:.1f} ms (handshake + 1 round trip); the "
          f"relay's own CPU in (a') and (c'): {relay_cpu:.2f} s\n")
    print("| run | checks | errors | checks/s | p50 ms | p99 ms | "
          "backend logins | Dovecot CPU s | proxy CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        pc = "-" if r["proxy_cpu_s"] is None else r["proxy_cpu_s"]
        print(f"| {name} | {r['checks']} | {r['errors']} | {r['rate']} "
              f"| {r['p50_ms']} | {r['p99_ms']} | {r['backend_logins']}"
              f" | {r['dovecot_cpu_s']} | {pc} |")
    a, c = rows["(a) Dovecot, schedule"], rows["(c) mailroom, schedule"]
    la = rows["(a) Dovecot, closed loop"]
    lc = rows["(c) mailroom, closed loop"]
    a40, c40 = rows["(a') Dovecot, +40 ms RTT, schedule"], \
        rows["(c') mailroom, backend +40 ms RTT, schedule"]
    verdict = {True: "met", False: "NOT met"}
    logins = ratio(c["backend_logins"], a["backend_logins"], 1)
    cpu = ratio(c["dovecot_cpu_s"], a["dovecot_cpu_s"], 0.01)
    rate = ratio(lc["rate"], la["rate"], 1)
    print(f"\n- backend logins (c)/(a): {logins:.3f} (target <= 0.10: "
          f"{verdict[logins <= 0.10]})")
    print(f"- Dovecot CPU (c)/(a): {cpu:.3f} (target <= 0.15: "
          f"{verdict[cpu <= 0.15]})")
    print(f"- closed loop checks/s (c)/(a): {rate:.1f}x, p99 "
          f"{lc['p99_ms']} ms (target >= 10x with p99 <= 5 ms: "
          f"{verdict[rate >= 10 and float(lc['p99_ms']) <= 5]})")
    for name in ("(b) nginx", "(b) perdition"):
        lb = rows[f"{name}, closed loop"]
        print(f"- closed loop checks/s {name}/(a): "
              f"{ratio(lb['rate'], la['rate'], 1):.2f}; (c)/{name}: "
              f"{ratio(lc['rate'], lb['rate'], 1):.1f}x")
    far = ratio(c40['p50_ms'], a40['p50_ms'], 0.01)
    print(f"- +40 ms RTT, p50: (a') {a40['p50_ms']} ms, (c') "
          f"{c40['p50_ms']} ms ({far:.3f} of (a')); (c') against (c) on "
          f"loopback: {c40['p50_ms']} vs "
          f"{c['p50_ms']} ms; p99 (a') {a40['p99_ms']}, (c') "
          f"{c40['p99_ms']} ms (first checks and users with mail go to "
          f"the far backend)")
    print(f"- wall time {time.monotonic() - t_start:.0f} s")


def main():
    global LOAD, RELAY
    t_start = time.monotonic()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    if not os.access(MAILROOM, os.X_OK):
        sys.exit(f"pop3.py: no mailroom binary at {MAILROOM} "
                 f"(build it, or set MAILROOM_BIN)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-bench-pop3-"))
    os.chmod(work, 0o755)       # nginx's workers run as nobody
    LOAD = compile_c(work, "pop3_load")
    RELAY = compile_c(work, "delay_relay")
    http_port = free_port()
    users = {f"u{i}": "pw" for i in range(n)}
    mail_users = [f"u{i}" for i in range(0, n, 100)]      # 1 %
    d = Dovecot(work, users=users, tuned=True, auth_penalty=False,
                push_url=f"http://127.0.0.1:{http_port}/push",
                max_userip_connections=100000)
    procs = []
    try:
        for u in mail_users:
            d.enable_push(u)
        rows = {}
        rows["(a) Dovecot, schedule"] = scheduled(d, d.pop3_port, n, seconds,
                                                  mail_users)

        nginx, nport = start_nginx(work, d.pop3_port)
        procs.append(nginx)
        rows["(b) nginx, schedule"] = scheduled(d, nport, n, seconds,
                                                mail_users, nginx)
        perdition, pport = start_perdition(work, d.pop3_port)
        procs.append(perdition)
        rows["(b) perdition, schedule"] = scheduled(d, pport, n, seconds,
                                                    mail_users, perdition)
        mailroom, mport = start_mailroom(d.pop3_port, http_port)
        procs.append(mailroom)
        rows["(c) mailroom, schedule"] = scheduled(d, mport, n, seconds,
                                                   mail_users, mailroom)

        rows["(a) Dovecot, closed loop"] = closed_loop(d, d.pop3_port, n)
        rows["(b) nginx, closed loop"] = closed_loop(d, nport, n, nginx)
        rows["(b) perdition, closed loop"] = closed_loop(d, pport, n,
                                                         perdition)
        rows["(c) mailroom, closed loop"] = closed_loop(d, mport, n,
                                                        mailroom)
        for p in (nginx, perdition, mailroom):
            stop(p)

        relay, rport = start_relay(d.pop3_port)
        procs.append(relay)
        greet, rtt = round_trips(rport)
        relay_check = [greet, rtt, round_trips(d.pop3_port)[1]]
        cpu0 = cpu_seconds(relay.pid)
        rows["(a') Dovecot, +40 ms RTT, schedule"] = scheduled(
            d, rport, n, seconds, mail_users)
        # A fresh proxy (nothing known yet) on the same HTTP port, for
        # Dovecot's push; its backend is the far side of the relay.
        mailroom2, mport2 = start_mailroom(rport, http_port)
        procs.append(mailroom2)
        rows["(c') mailroom, backend +40 ms RTT, schedule"] = scheduled(
            d, mport2, n, seconds, mail_users, mailroom2)
        relay_check.append(cpu_seconds(relay.pid) - cpu0)
        report(rows, n, seconds, mail_users, relay_check, t_start)
        log = (work / "nginx" / "error.log").read_text(errors="replace")
        bad = [x for x in log.splitlines()
               if any(f"[{lv}]" in x for lv in ("error", "crit", "alert"))]
        if bad:
            print(f"- nginx logged {len(bad)} errors, the first: {bad[0]}")
    finally:
        for p in reversed(procs):
            stop(p)
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
