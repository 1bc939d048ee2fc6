"""SMTP injection into `mailroom daemon` (SPEC D17) and backpressure (D8).

The daemon listens with --smtp-listen, spools each message before its 250,
and relays it through the same delivery loops as campaigns to receivers
(tests/integration/receiver.py) reached by --route.  Clients are Python's
smtplib, swaks and raw sockets for the bad inputs.
"""
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import free_port, wait_port
from peers import (make_cert, read_accounting, read_accounting_partial,
                   wait_until)

MSG = ("From: app@sender.test\r\nTo: {to}\r\nSubject: injected {n}\r\n\r\n"
       "Line one.\r\n.a line that starts with a dot\r\n..two dots\r\n"
       "last line\r\n")

DAEMON_OPTS = ["-o", "general.hostname=mr.test",
               "-o", "queue.retry_base=500ms",
               "-o", "queue.retry_max_interval=1s",
               "-o", "queue.max_attempts=1000",
               "-o", "queue.host_down_time=100ms",
               "-o", "smtp.connect_timeout=2s"]


class Daemon:
    """mailroom daemon with SMTP injection, started in the background."""

    def __init__(self, mailroom_bg, tmp_path, routes, extra=(), name=None,
                 port=None, store=None):
        self.port = port or free_port("127.0.0.1")
        self.store = store or tmp_path / "store.db"
        self.acct = tmp_path / "accounting.csv"
        args = ["daemon", "--store", self.store, "--smtp-listen",
                f"127.0.0.1:{self.port}", "--accounting", self.acct]
        for d, a in routes.items():
            args += ["--route", f"{d}={a}"]
        self.run = mailroom_bg(args + DAEMON_OPTS + list(extra), name=name)
        wait_port("127.0.0.1", self.port, timeout=15)

    def smtp(self, **kw):
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30, **kw)

    def stop(self):
        """SIGTERM; it must end cleanly (no crash, no sanitizer report)."""
        self.run.signal(signal.SIGTERM)
        rc = self.run.wait(30)
        assert rc == 0, self.run
        assert "Sanitizer" not in self.run.stderr, self.run.stderr[-3000:]


@pytest.fixture
def daemon(mailroom_bg, tmp_path):
    def start(routes, extra=(), **kw):
        return Daemon(mailroom_bg, tmp_path, routes, extra, **kw)
    return start


def _wait_acct(path, n, timeout=30):
    """Wait until the accounting file has n delivered records."""
    def count():
        return sum(1 for r in read_accounting_partial(path)
                   if r["type"] == "delivered")
    ok = wait_until(lambda: count() >= n, timeout=timeout)
    assert ok, f"{count()} of {n} delivered"
    return count()


def test_inject_relays_message_intact(daemon, receivers):
    rc = receivers("fast", keep=True)
    d = daemon({"example.test": rc.address})
    with d.smtp() as s:
        code, caps = s.ehlo("client.test")
        assert code == 250
        assert b"PIPELINING" in caps and b"SIZE" in caps and \
            b"8BITMIME" in caps
        refused = s.sendmail("app@sender.test",
                             ["a@example.test", "b@example.test"],
                             MSG.format(to="a@example.test", n=1))
        assert refused == {}
    _wait_acct(d.acct, 2)
    d.stop()
    st = rc.stop()
    [(rcpts, data)] = st["messages"]
    assert sorted(rcpts) == ["a@example.test", "b@example.test"]
    # Our Received header first, then the message byte for byte (the
    # dot lines came through stuffing and unstuffing twice).
    assert data.startswith("Received: from client.test (127.0.0.1:")
    assert "by mr.test (mailroom) with ESMTP id " in data
    body = data[data.index("From: app@sender.test"):]
    assert body.replace("\n", "\r\n").replace("\r\r\n", "\r\n") == \
        MSG.format(to="a@example.test", n=1)
    recs = read_accounting(d.acct, "csv")
    assert {r["recipient"] for r in recs if r["type"] == "delivered"} == \
        {"a@example.test", "b@example.test"}


def test_swaks_pipelining(daemon, receivers):
    rc = receivers("fast")
    d = daemon({"example.test": rc.address})
    p = subprocess.run(["swaks", "--server", f"127.0.0.1:{d.port}",
                        "--pipeline", "--from", "app@sender.test",
                        "--to", "s1@example.test,s2@example.test",
                        "--h-Subject", "swaks", "--body", "hello"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"<-  250 2\.0\.0 Ok: queued as ([0-9a-f]{16})",
                  p.stdout)
    assert m, p.stdout
    _wait_acct(d.acct, 2)
    # The accounting file names the message by the id the client got.
    recs = [r for r in read_accounting(d.acct, "csv")
            if r["type"] == "delivered"]
    assert [r["message_id"] for r in recs] == [m.group(1)] * 2, recs


def test_no_open_relay_and_auth_over_tls(mailroom, daemon, receivers,
                                         tmp_path):
    rc = receivers("fast")
    cert, key = make_cert(tmp_path, cn="mr.test")
    store = tmp_path / "store.db"
    _account_add(mailroom, store, "app", "s3cret-pw")
    # Trusted is only 127.0.0.9: this client (127.0.0.1) must AUTH.
    d = daemon({"example.test": rc.address}, store=store, extra=[
        "-o", "inject.trusted_networks=127.0.0.9/32",
        "-o", f"inject.tls_cert={cert}", "-o", f"inject.tls_key={key}",
        "-o", "inject.auth_delay=300ms"])
    with d.smtp() as s:
        s.ehlo("client.test")
        assert not s.has_extn("auth"), "AUTH offered without TLS"
        s.mail("app@sender.test")
        code, text = s.rcpt("x@example.test")
        assert code == 554 and b"5.7.1" in text, (code, text)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with d.smtp() as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        assert s.has_extn("auth")
        t0 = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _auth_plain(s, "app", "wrong")
        assert time.monotonic() - t0 >= 0.25    # the failure's delay
        _auth_plain(s, "app", "s3cret-pw")
        assert s.sendmail("app@sender.test", ["y@example.test"],
                          MSG.format(to="y@example.test", n=2)) == {}
    _wait_acct(d.acct, 1)
    recs = read_accounting(d.acct, "csv")
    assert [r["recipient"] for r in recs if r["type"] == "delivered"] == \
        ["y@example.test"]
    # Three bad passwords end the session; each later one waits longer.
    with d.smtp() as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        delays = []
        for i in range(2):
            t0 = time.monotonic()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                _auth_plain(s, "app", f"bad{i}")
            delays.append(time.monotonic() - t0)
        assert delays[1] > delays[0]
        # The third failure (an unknown user: the same answer) ends it.
        with pytest.raises((smtplib.SMTPAuthenticationError,
                            smtplib.SMTPServerDisconnected)):
            _auth_plain(s, "nobody", "bad")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
    # The right password does not let "app" act as another account.
    import base64
    with d.smtp() as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"boss\0app\0s3cret-pw").decode())
        assert code == 535, code
    # AUTH LOGIN: a user name with a control character (it would reach
    # the log and the spool) is refused before any password is asked.
    with d.smtp() as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        code, _ = s.docmd("AUTH", "LOGIN")
        assert code == 334, code
        code, text = s.docmd(base64.b64encode(b"app\r\nevent=auth")
                             .decode())
        assert code == 501 and b"5.5.2" in text, (code, text)
    # The store holds a verifier, never the password.
    import sqlite3
    con = sqlite3.connect(store)
    blob = b"".join(str(row).encode() for row in con.execute(
        "select * from accounts"))
    assert b"s3cret-pw" not in blob


def _account_add(mailroom, store, name, password):
    p = subprocess.run([mailroom, "account", "add", name, "--password",
                        password, "--store", str(store)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def _auth_plain(s, user, password):
    """One AUTH PLAIN attempt (smtplib's login() tries every method)."""
    s.ehlo_or_helo_if_needed()      # smtplib's auth() does not, and
    s.user, s.password = user, password  # takes a 503 for success
    return s.auth("PLAIN", s.auth_plain)


def _raw(port, lines, read_greeting=True, timeout=10):
    """Send raw bytes, return everything the server said until it closed
    or went quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    if read_greeting:
        out += s.recv(4096)
    for chunk in lines:
        s.sendall(chunk)
        time.sleep(0.1)
    s.settimeout(1.5)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out.decode("latin-1")


ENV = (b"EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n"
       b"RCPT TO:<bad@example.test>\r\nDATA\r\n")


@pytest.mark.parametrize("name,chunks,expect", [
    ("long line", [b"EHLO c.test\r\n", b"MAIL FROM:<a@sender.test>\r\n",
                   b"RCPT TO:<bad@example.test>\r\n", b"DATA\r\n",
                   b"Subject: x\r\n\r\n" + b"y" * 1200 + b"\r\n.\r\n"],
     "500 5.5.2"),
    ("bare LF", [b"EHLO c.test\r\n", b"MAIL FROM:<a@sender.test>\r\n",
                 b"RCPT TO:<bad@example.test>\r\n", b"DATA\r\n",
                 b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n"], "5.5.2"),
    ("long line ended by a bare LF, smuggling a message",
     [b"EHLO c.test\r\n", b"MAIL FROM:<a@sender.test>\r\n",
      b"RCPT TO:<bad@example.test>\r\n", b"DATA\r\n",
      b"Subject: x\r\n\r\n" + b"y" * 1200 + b"\n.\r\n"
      b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<bad@example.test>\r\n"
      b"DATA\r\nSubject: smuggled\r\n\r\nz\r\n.\r\n"],
     "550 5.5.2"),
    ("NUL", [b"EHLO c.test\r\n", b"MAIL FROM:<a@sender.test>\r\n",
             b"RCPT TO:<bad@example.test>\r\n", b"DATA\r\n",
             b"Subject: x\r\n\r\nnul\x00here\r\n.\r\n"], "550 5.6.0"),
    ("over SIZE", [b"EHLO c.test\r\n", b"MAIL FROM:<a@sender.test>\r\n",
                   b"RCPT TO:<bad@example.test>\r\n", b"DATA\r\n",
                   b"Subject: x\r\n\r\n" + (b"z" * 900 + b"\r\n") * 30 +
                   b".\r\n"], "552 5.3.4"),
    ("declared over SIZE", [b"EHLO c.test\r\n",
                            b"MAIL FROM:<a@sender.test> SIZE=999999\r\n"],
     "552 5.3.4"),
    ("pipelined before EHLO", [ENV], "554 5.5.0"),
    ("disconnect after EHLO", [b"EHLO c.test\r\n"], "250"),
    ("disconnect after MAIL", [b"EHLO c.test\r\n",
                               b"MAIL FROM:<a@sender.test>\r\n"], "250"),
    ("disconnect after RCPT", [b"EHLO c.test\r\n",
                               b"MAIL FROM:<a@sender.test>\r\n",
                               b"RCPT TO:<bad@example.test>\r\n"], "250"),
    ("disconnect in DATA", [b"EHLO c.test\r\n",
                            b"MAIL FROM:<a@sender.test>\r\n",
                            b"RCPT TO:<bad@example.test>\r\n", b"DATA\r\n",
                            b"Subject: x\r\n\r\nhalf a mess"], "354"),
])
def test_bad_input_never_half_accepted(daemon, receivers, name, chunks,
                                       expect):
    rc = receivers("fast")
    d = daemon({"example.test": rc.address},
               extra=["-o", "inject.max_message_size=20k"])
    out = _raw(d.port, chunks)
    assert expect in out, (name, out)
    assert "queued as" not in out, (name, out)
    # The daemon goes on: a good message after it is delivered, the bad
    # one never is.
    with d.smtp() as s:
        assert s.sendmail("a@sender.test", ["good@example.test"],
                          MSG.format(to="good@example.test", n=3)) == {}
    _wait_acct(d.acct, 1)
    time.sleep(0.5)
    d.stop()
    st = rc.stop()
    assert [a for _, a in st["accepted"]] == ["good@example.test"], name


def test_slow_data_is_cut(daemon, receivers):
    rc = receivers("fast")
    d = daemon({"example.test": rc.address},
               extra=["-o", "inject.data_timeout=2s"])
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.recv(4096)
    for c in [b"EHLO c.test\r\n", b"MAIL FROM:<a@sender.test>\r\n",
              b"RCPT TO:<slow@example.test>\r\n", b"DATA\r\n"]:
        s.sendall(c)
        time.sleep(0.1)
    t0 = time.monotonic()
    out = b""
    try:
        while time.monotonic() - t0 < 8:
            s.sendall(b"x")          # a byte every 200 ms: never idle
            time.sleep(0.2)
            s.setblocking(False)
            try:
                out += s.recv(4096)
            except BlockingIOError:
                pass
            s.setblocking(True)
            if b"421" in out:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    assert b"421 4.4.2" in out, out
    assert time.monotonic() - t0 < 6
    d.stop()
    assert rc.stop()["accepted"] == []


def test_kill_9_loses_no_accepted_message(daemon, receivers, tmp_path):
    """Every message answered 250 is delivered after a kill -9, even one
    whose recipients were not tried yet: the receiver is down while the
    messages are injected, and up only after the restart."""
    port = free_port("127.0.0.2")
    d = daemon({"example.test": f"127.0.0.2:{port}"}, name="first")
    accepted, errors = [], []
    stop = threading.Event()

    def client(k):
        n = 0
        try:
            with d.smtp() as s:
                while not stop.is_set() and n < 400:
                    to = f"k{k}-{n}@example.test"
                    s.sendmail("a@sender.test", [to],
                               MSG.format(to=to, n=n))
                    accepted.append(to)
                    n += 1
        except (smtplib.SMTPException, OSError) as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(accepted) >= 300, timeout=30)
    d.run.kill()                 # SIGKILL, by PID, mid-stream
    stop.set()
    for t in threads:
        t.join(timeout=30)
    n_accepted = len(accepted)
    assert n_accepted >= 300
    rc = receivers("fast", port=port)
    d2 = daemon({"example.test": rc.address}, name="second", port=d.port,
                store=d.store)
    # Everything answered 250 arrives; a message spooled at the kill but
    # not yet answered may arrive too (the client was never told).
    _wait_acct(d2.acct, n_accepted, timeout=60)
    time.sleep(1)
    d2.stop()
    got = [a for _, a in rc.stop()["accepted"]]
    assert set(accepted) <= set(got), sorted(set(accepted) - set(got))[:5]
    assert len(got) == len(set(got)), "a recipient got two copies"
    assert len(got) - n_accepted <= 4       # at most one per client
    m = re.search(r"recovered: (\d+) messages", d2.run.stdout)
    assert m and int(m.group(1)) >= n_accepted, d2.run.stdout


def test_backpressure_pauses_and_resumes(daemon, receivers):
    """D8: the sink is down, the backlog reaches inject.backlog_max, MAIL
    gets 452 4.3.1 and new sessions 421 4.3.2; once the sink is back the
    backlog drains, injection resumes, and everything is delivered.  The
    status endpoint (curl) shows the state, backlog and thresholds all
    along."""
    port = free_port("127.0.0.2")
    hport = free_port("127.0.0.1")
    d = daemon({"example.test": f"127.0.0.2:{port}"}, extra=[
        "-o", "inject.backlog_max=40", "-o", "inject.backlog_resume=50",
        "-o", f"inject.http_listen=127.0.0.1:{hport}"])
    assert f"http-listen: 127.0.0.1:{hport}" in d.run.stdout
    sent = []
    with d.smtp() as s:
        for n in range(200):
            to = f"bp{n}@example.test"
            try:
                s.sendmail("a@sender.test", [to], MSG.format(to=to, n=n))
            except smtplib.SMTPSenderRefused as e:
                assert e.smtp_code == 452 and b"4.3.1" in e.smtp_error
                break
            sent.append(to)
    assert len(sent) == 40, len(sent)
    with pytest.raises(smtplib.SMTPConnectError) as ei:
        d.smtp()
    assert ei.value.smtp_code == 421 and b"4.3.2" in ei.value.smtp_error
    assert "event=backpressure state=paused" in d.run.stderr
    st = _curl(hport, "/status")
    assert "state: paused" in st and \
        "backlog: 40 recipients (pause at 40, resume below 50%)" in st, st
    assert "mailroom_inject_paused 1" in _curl(hport, "/metrics")
    rc = receivers("fast", port=port)
    _wait_acct(d.acct, 40, timeout=60)

    def resumed():
        try:
            with d.smtp() as s:
                s.sendmail("a@sender.test", ["after@example.test"],
                           MSG.format(to="after@example.test", n=0))
            return True
        except (smtplib.SMTPException, OSError):
            return False
    assert wait_until(resumed, timeout=30)
    assert "event=backpressure state=resumed" in d.run.stderr
    _wait_acct(d.acct, 41)
    st = _curl(hport, "/status")
    assert "state: accepting" in st and "delivered: 41" in st, st
    m = _curl(hport, "/metrics")
    assert "mailroom_inject_paused 0" in m and \
        "mailroom_relay_delivered_total 41" in m, m
    d.stop()
    got = {a for _, a in rc.stop()["accepted"]}
    assert got == set(sent) | {"after@example.test"}


def _curl(port, path, source="127.0.0.1"):
    """GET path from the daemon's status endpoint with curl: the body."""
    p = subprocess.run(["curl", "-sS", "--interface", source,
                        "-o", "-", "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{port}{path}"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return body if code == "200" else f"HTTP {code}: {body}"


def test_status_endpoint_for_trusted_networks_only(daemon, receivers):
    rc = receivers("fast")
    hport = free_port("127.0.0.1")
    d = daemon({"example.test": rc.address}, extra=[
        "-o", "inject.trusted_networks=127.0.0.1/32",
        "-o", f"inject.http_listen=127.0.0.1:{hport}"])
    assert _curl(hport, "/status", source="127.0.0.3").startswith(
        "HTTP 403")
    assert _curl(hport, "/nothing").startswith("HTTP 404")
    st = _curl(hport, "/status")
    assert "state: accepting" in st and "governor: interval=" in st, st
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w",
                        "%{http_code}", "-X", "DELETE",
                        f"http://127.0.0.1:{hport}/status"],
                       capture_output=True, text=True, timeout=30)
    assert p.stdout == "501", p     # libevent: a method not allowed
    d.stop()
    rc.stop()


def _inject_streams(d, tag, clients, n):
    """clients sessions each send n one-recipient messages back to back;
    the addresses sent ("TAGk-i@example.test")."""
    sent = []

    def client(k):
        with d.smtp() as s:
            for i in range(n):
                to = f"{tag}{k}-{i}@example.test"
                s.sendmail("a@sender.test", [to], MSG.format(to=to, n=i))
                sent.append(to)

    threads = [threading.Thread(target=client, args=(k,))
               for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sent


def test_stream_of_messages_delivered_while_running(daemon, receivers):
    """Messages injected back to back by several clients reach the
    receiver while the daemon runs (each joins a queue whose destination
    is already connected)."""
    rc = receivers("fast")
    d = daemon({"example.test": rc.address})
    sent = _inject_streams(d, "s", 4, 150)
    assert len(sent) == 600
    _wait_acct(d.acct, 600, timeout=30)
    d.stop()
    got = [a for _, a in rc.stop()["accepted"]]
    assert sorted(got) == sorted(sent)


def _abort(port, chunks):
    """After the greeting, send chunks, each after the previous one was
    answered (nothing early or pipelined), the last one unanswered; then
    reset the connection at once."""
    import struct
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                 struct.pack("ii", 1, 0))
    try:
        if chunks:
            s.recv(4096)
        for i, c in enumerate(chunks):
            if i > 0:
                s.recv(4096)
            s.sendall(c)
        time.sleep(0.02)
    except (BrokenPipeError, ConnectionResetError):
        pass                    # the server ended it first: as well
    s.close()


def test_client_vanishing_at_the_daemons_busy_moments(mailroom, daemon,
                                                      receivers, tmp_path):
    """A client that resets the connection right after connecting, while
    its AUTH is being checked on the worker thread, and right after its
    final dot (while the message waits for the spool's sync): the daemon
    lives on, a message it never answered may arrive but only once, and
    a good message afterwards is delivered."""
    import base64
    rc = receivers("fast")
    store = tmp_path / "store.db"
    p = subprocess.run([mailroom, "account", "add", "app", "--password",
                        "pw-123456", "--store", str(store)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    d = daemon({"example.test": rc.address}, store=store,
               extra=["-o", "inject.plaintext_auth=yes",
                      "-o", "inject.trusted_networks=127.0.0.9/32",
                      "-o", "general.log_level=info"])
    plain = base64.b64encode(b"\0app\0pw-123456")
    login = [b"EHLO c.test\r\n", b"AUTH LOGIN\r\n",
             base64.b64encode(b"app") + b"\r\n",
             base64.b64encode(b"pw-123456") + b"\r\n"]
    for _ in range(5):
        _abort(d.port, [])
        _abort(d.port, [b"EHLO c.test\r\n", b"AUTH PLAIN " + plain +
                        b"\r\n"])
        _abort(d.port, login)
        _abort(d.port, [b"EHLO c.test\r\n", b"AUTH PLAIN " + plain +
                        b"\r\n", b"MAIL FROM:<a@sender.test>\r\n",
                        b"RCPT TO:<vanish@example.test>\r\n", b"DATA\r\n",
                        b"Subject: x\r\n\r\nbody\r\n.\r\n"])
    # The aborts got as far as they were meant to: five sessions
    # authenticated and reached their final dot.
    assert wait_until(lambda: d.run.stderr.count(
        'event=auth user="app"') + d.run.stderr.count("event=auth user=app")
        >= 5, timeout=10), d.run.stderr[-3000:]
    # AUTH LOGIN works for a client that stays.
    out = _raw(d.port, login + [b"MAIL FROM:<a@sender.test>\r\n",
                                b"RCPT TO:<login@example.test>\r\n",
                                b"DATA\r\n", b"Subject: y\r\n\r\nok\r\n.\r\n",
                                b"QUIT\r\n"])
    assert "235 2.7.0" in out and "queued as" in out, out
    with d.smtp() as s:
        _auth_plain(s, "app", "pw-123456")
        assert s.sendmail("a@sender.test", ["good@example.test"],
                          MSG.format(to="good@example.test", n=4)) == {}
    assert wait_until(lambda: {"good@example.test", "login@example.test"}
                      <= {r["recipient"] for r in
                          read_accounting_partial(d.acct)
                          if r["type"] == "delivered"}, timeout=30)
    time.sleep(0.5)
    d.stop()
    got = [a for _, a in rc.stop()["accepted"]]
    assert "good@example.test" in got and "login@example.test" in got
    assert got.count("vanish@example.test") <= 5      # one per spooled try
    assert len([a for a in got if a != "vanish@example.test"]) == 2


def test_relay_is_paced_by_the_governor(daemon, receivers):
    """D9 for injected mail: the governor's slots bound the relay's
    sessions as they bound a campaign's, each decision is logged, and
    the daemon shows the governor's state when it starts."""
    rc = receivers("slow", delay=0.05)
    d = daemon({"example.test": rc.address},
               extra=["-o", "governor.interval=1s",
                      "-o", "governor.initial_slots=2",
                      "-o", "governor.max_slots=2",
                      "-o", "smtp.max_connections=50",
                      "-o", "general.log_level=info"])
    sent = _inject_streams(d, "g", 4, 30)
    assert len(sent) == 120
    _wait_acct(d.acct, 120, timeout=60)
    d.stop()
    st = rc.stop()
    assert sorted(a for _, a in st["accepted"]) == sorted(sent)
    assert st["max_open"] <= 2, st["max_open"]
    assert "governor: interval=0 slots=2 " in d.run.stdout, d.run.stdout
    decisions = [ln for ln in d.run.stderr.splitlines()
                 if " governor " in ln and "interval=" in ln]
    assert decisions, d.run.stderr[-2000:]
    assert "slots=2.00->2.00" in decisions[0], decisions[0]


def _vip_pool(mailroom, tmp_path):
    """Account vip (password pool-pw-1) in a new store, sending from
    [pool vip] (127.0.0.8); everyone else from shaping.source
    (127.0.0.5).  The store, the daemon's extra arguments (that
    configuration, a TLS certificate) and a client TLS context."""
    cert, key = make_cert(tmp_path, cn="mr.test")
    store = tmp_path / "store.db"
    _account_add(mailroom, store, "vip", "pool-pw-1")
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text("[shaping]\nsource = 127.0.0.5\n"
                   "[pool vip]\nsource = 127.0.0.8\naccount = vip\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return store, ["--config", str(cfg), "-o", f"inject.tls_cert={cert}",
                   "-o", f"inject.tls_key={key}"], ctx


def test_authenticated_mail_goes_out_from_its_accounts_pool(
        mailroom, daemon, receivers, tmp_path):
    """[pool NAME] account = ...: mail injected by an account goes out
    from its pool's source addresses; mail of trusted clients without
    AUTH from shaping.source, even to the same domain at the same time
    (each pool has its own queue for the domain)."""
    rc = receivers("fast")
    store, extra, ctx = _vip_pool(mailroom, tmp_path)
    d = daemon({"example.test": rc.address}, store=store, extra=extra)
    vip = [f"v{n}@example.test" for n in range(20)]
    plain = [f"p{n}@example.test" for n in range(20)]
    with d.smtp() as a, d.smtp() as b:
        a.starttls(context=ctx)
        _auth_plain(a, "vip", "pool-pw-1")
        b.ehlo("client.test")
        for v, p_ in zip(vip, plain):
            assert a.sendmail("app@sender.test", [v],
                              MSG.format(to=v, n=1)) == {}
            assert b.sendmail("app@sender.test", [p_],
                              MSG.format(to=p_, n=1)) == {}
    _wait_acct(d.acct, 40)
    d.stop()
    peer = rc.stop()["rcpt_peer"]
    assert {peer[v] for v in vip} == {"127.0.0.8"}, peer
    assert {peer[p_] for p_ in plain} == {"127.0.0.5"}, peer


def test_bounce_goes_back_to_the_sender_as_a_dsn(daemon, receivers):
    """RFC 5321 6.1: a recipient refused for good after the 250 gets its
    sender a delivery status notification (RFC 3464), from the null
    sender, with one report per failed recipient and the original's
    header; a message from the null sender gets none back."""
    import email
    import email.policy
    rc = receivers("fast", keep=True, reject_prefix="nobody")
    d = daemon({"example.test": rc.address, "sender.test": rc.address},
               extra=["-o", "general.log_level=info"])
    with d.smtp() as s:
        refused = s.sendmail("app@sender.test",
                             ["ok@example.test", "nobody1@example.test",
                              "nobody2@example.test"],
                             MSG.format(to="ok@example.test", n=7))
        assert refused == {}
        # A bounce of a bounce would loop: the null sender gets none.
        assert s.sendmail("<>", ["nobody3@example.test"],
                          MSG.format(to="nobody3@example.test", n=8)) == {}
    ok = wait_until(lambda: "event=dsn " in d.run.stderr, timeout=30)
    assert ok, d.run.stderr[-3000:]
    _wait_acct(d.acct, 2)       # the good recipient and the DSN itself
    d.stop()
    st = rc.stop()
    dsns = [(rcpts, data, sender) for (rcpts, data), sender
            in zip(st["messages"], st["senders"])
            if "multipart/report" in data]
    assert len(dsns) == 1, st["messages"]
    rcpts, data, sender = dsns[0]
    assert rcpts == ["app@sender.test"] and sender == "<>", (rcpts, sender)
    m = email.message_from_string(data, policy=email.policy.default)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    assert m["Auto-Submitted"] == "auto-replied"
    text, status, headers = m.get_payload()
    assert "nobody1@example.test" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    groups = status.get_payload()     # per-message, then per-recipient
    assert groups[0]["Reporting-MTA"] == "dns; mr.test"
    per_rcpt = {g["Final-Recipient"]: g for g in groups[1:]}
    assert set(per_rcpt) == {"rfc822; nobody1@example.test",
                             "rfc822; nobody2@example.test"}, per_rcpt
    for g in per_rcpt.values():
        assert g["Action"] == "failed" and g["Status"] == "5.1.1", g
        assert g["Diagnostic-Code"].startswith("smtp; 550"), g
    assert headers.get_content_type() == "text/rfc822-headers"
    original = headers.get_payload()
    assert "Subject: injected 7" in str(original), original
    assert "Line one." not in data          # header only, no body
    recs = read_accounting(d.acct, "csv")
    bounced = sorted(r["recipient"] for r in recs if r["type"] == "bounced")
    assert bounced == ["nobody1@example.test", "nobody2@example.test",
                       "nobody3@example.test"], bounced


def test_bounce_of_a_large_message_quotes_only_its_header(daemon,
                                                         receivers):
    """The DSN of a message far larger than the part it quotes (the
    header, up to 32 KiB) is built from the head of the spooled message
    alone: its header is there, nothing of its body."""
    rc = receivers("fast", keep=True, reject_prefix="nobody")
    d = daemon({"example.test": rc.address, "sender.test": rc.address},
               extra=["-o", "general.log_level=info"])
    body = "".join(f"body line {n:06d} of a large message\r\n"
                   for n in range(40000))           # about 1.4 MB
    with d.smtp() as s:
        assert s.sendmail("app@sender.test", ["nobody@example.test"],
                          "From: app@sender.test\r\nTo: nobody@example.test"
                          "\r\nSubject: large one\r\n\r\n" + body) == {}
    ok = wait_until(lambda: "event=dsn " in d.run.stderr, timeout=30)
    assert ok, d.run.stderr[-3000:]
    _wait_acct(d.acct, 1)       # the DSN itself
    d.stop()
    dsns = [data for _, data in rc.stop()["messages"]
            if "multipart/report" in data]
    assert len(dsns) == 1, len(dsns)
    assert "Subject: large one" in dsns[0]
    assert "body line" not in dsns[0]
    assert len(dsns[0]) < 8192, len(dsns[0])


def test_recovered_mail_keeps_its_accounts_pool(mailroom, daemon, receivers,
                                                tmp_path):
    """Mail an account injected, still in the spool at a restart, goes out
    from that account's pool after it (the pool is found again from the
    account recorded in the spool)."""
    port = free_port("127.0.0.2")
    store, extra, ctx = _vip_pool(mailroom, tmp_path)
    # Nothing listens for example.test yet: the mail stays in the spool.
    d = daemon({"example.test": f"127.0.0.2:{port}"}, store=store,
               extra=extra, name="first")
    vip = [f"v{n}@example.test" for n in range(5)]
    with d.smtp() as a:
        a.starttls(context=ctx)
        _auth_plain(a, "vip", "pool-pw-1")
        for v in vip:
            assert a.sendmail("app@sender.test", [v],
                              MSG.format(to=v, n=1)) == {}
    d.run.kill()
    rc = receivers("fast", port=port)
    d2 = daemon({"example.test": rc.address}, store=store, extra=extra,
                name="second", port=d.port)
    _wait_acct(d2.acct, len(vip))
    d2.stop()
    peer = rc.stop()["rcpt_peer"]
    assert {peer[v] for v in vip} == {"127.0.0.8"}, peer
