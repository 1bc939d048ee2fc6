"""bench/pop3_forward.py - how long a check takes that the edge proxy must
forward to a backend 40 ms of round trip away.

    /usr/bin/python3 bench/pop3_forward.py [MAILROOM_BINARY ...]

A Dovecot on loopback behind bench/delay_relay.c (20 ms each way); for
each binary given (default build/mailroom), a pop3-proxy in front of the
relay and 20 users' first checks (USER, PASS, STAT, QUIT; none can be
answered locally), one at a time; then the same checks straight through
the relay.  Prints the median, least and most milliseconds of each.
Everything stays on 127.0.0.1; every process started is stopped by PID.
"""
import pathlib
import poplib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from dovecot import Dovecot  # noqa: E402

USERS = 20


def checks(port, users):
    ms = []
    for u in users:
        t0 = time.monotonic()
        p = poplib.POP3("127.0.0.1", port, timeout=10)
        p.user(u)
        p.pass_("pw")
        p.stat()
        p.quit()
        ms.append((time.monotonic() - t0) * 1000)
    return (f"median {statistics.median(ms):.1f} ms, least {min(ms):.1f}, "
            f"most {max(ms):.1f}")


def main():
    binaries = sys.argv[1:] or [str(ROOT / "build" / "mailroom")]
    work = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-bench-fwd-"))
    relay_bin = work / "delay_relay"
    subprocess.run(["cc", "-O2", "-o", str(relay_bin),
                    str(ROOT / "bench" / "delay_relay.c")], check=True)
    n = USERS * (len(binaries) + 1)
    d = Dovecot(work, users={f"u{i}": "pw" for i in range(n)},
                auth_penalty=False)
    relay = subprocess.Popen([str(relay_bin), "127.0.0.1", "0",
                              "127.0.0.1", str(d.pop3_port)],
                             stdout=subprocess.PIPE, text=True)
    try:
        rport = int(relay.stdout.readline().rsplit(":", 1)[1])
        for k, binary in enumerate(binaries):
            proxy = subprocess.Popen(
                [binary, "pop3-proxy", "--listen", "127.0.0.1:0",
                 "--backend", f"127.0.0.1:{rport}", "-o",
                 "general.log_level=warn"], stdout=subprocess.PIPE,
                text=True)
            try:
                port = int(proxy.stdout.readline().rsplit(":", 1)[1])
                users = [f"u{k * USERS + i}" for i in range(USERS)]
                print(f"{binary}: {checks(port, users)}", flush=True)
            finally:
                proxy.terminate()
                proxy.wait(timeout=10)
        users = [f"u{len(binaries) * USERS + i}" for i in range(USERS)]
        print(f"straight through the relay: {checks(rport, users)}")
    finally:
        relay.terminate()
        relay.wait(timeout=10)
        d.stop()


if __name__ == "__main__":
    main()
