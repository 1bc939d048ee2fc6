"""The SMTP server session (src/smtps) against real clients and hostile
input, through smtps_probe (tests/tools/smtps_probe.c): a test-only server
that accepts relay from loopback or authenticated clients (user "u",
password "p") and appends each accepted message to a JSON-lines file.

Clients: Python's smtplib, swaks (skipped when not installed) and raw
sockets for what no client library will send: pipelined bursts, commands
before the greeting, long lines, bare LF and CR, NUL, oversize messages,
STARTTLS with a command smuggled behind it, slow DATA, a client that does
not read, and a disconnect at every stage.

Run with Debian's /usr/bin/python3 -m pytest -q -p no:cacheprovider.
"""
import base64
import hashlib
import json
import os
import pathlib
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import mailroom_path
from peers import make_cert, wait_until

PASSWORD_BAD = "Sekr3t-Wr0ng-Passw0rd"


def probe_path():
    """$SMTPS_PROBE, else tests/smtps_probe next to the mailroom binary."""
    path = os.environ.get("SMTPS_PROBE") or str(
        pathlib.Path(mailroom_path()).parent / "tests" / "smtps_probe")
    if not os.access(path, os.X_OK):
        pytest.exit(f"smtps_probe not found at {path}: build it first",
                    returncode=2)
    return path


class Probe:
    """One smtps_probe on a loopback port chosen by the kernel."""

    count = 0

    def __init__(self, tmp_path, args=(), trace=False):
        Probe.count += 1
        n = Probe.count
        self.signalled = False
        self.out = tmp_path / f"messages-{n}.jsonl"
        self.log_path = tmp_path / f"probe-{n}.log"
        self.log = open(self.log_path, "w")
        env = dict(os.environ)
        if trace:
            env["SMTPS_PROBE_TRACE"] = "1"
        self.proc = subprocess.Popen(
            [probe_path(), "--listen", "127.0.0.1:0", "--out",
             str(self.out), *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.proc.kill()
            raise RuntimeError(f"probe did not start: {line!r}; see "
                               f"{self.log_path}")
        self.host, port = line.split()[1].rsplit(":", 1)
        self.port = int(port)

    def messages(self):
        if not self.out.exists():
            return []
        return [json.loads(x) for x in self.out.read_text().splitlines()]

    def logtext(self):
        self.log.flush()
        return self.log_path.read_text()

    def alive(self):
        return self.proc.poll() is None

    def terminate(self):
        if self.proc.poll() is None and not self.signalled:
            self.signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self):
        self.terminate()
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.log.close()
        text = self.log_path.read_text()
        # Under ASan/UBSan, a leak or an error fails the test.
        assert "Sanitizer" not in text and "runtime error" not in text, text
        assert rc == 0, f"probe exited {rc}: {text[-2000:]}"


@pytest.fixture
def probe(tmp_path):
    started = []

    def start(*args, trace=False):
        p = Probe(tmp_path, args, trace)
        started.append(p)
        return p

    yield start
    for p in started:
        p.terminate()
    for p in started:
        p.stop()


class Raw:
    """A raw SMTP connection: bytes out, whole replies in."""

    def __init__(self, port, greet=True, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""
        if greet:
            code, _ = self.reply()
            assert code == 220

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; unread {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def reply(self):
        """(code, [texts]) of one reply, multi-line ones joined."""
        texts = []
        while True:
            line = self._line()
            code = int(line[:3])
            texts.append(line[4:])
            if line[3:4] != "-":
                return code, texts

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def closed(self, timeout=5.0):
        """True when the server closes the connection (no more input)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def ehlo(c):
    code, caps = c.cmd("EHLO client.test")
    assert code == 250
    return caps


def transaction(c, sender="a@b.test", rcpts=("c@d.test",)):
    assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
    assert c.cmd("DATA")[0] == 354


def sha(b):
    return hashlib.sha256(b).hexdigest()


def plain(user, pw, authz=""):
    return base64.b64encode(f"{authz}\0{user}\0{pw}".encode()).decode()


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ------------------------------------------------------------ clients


def test_smtplib_message_and_dot_unstuffing(probe):
    """smtplib sends; the body arrives dot-unstuffed with CRLF line ends,
    the envelope as given."""
    p = probe()
    body = (b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n"
            b"x\r\nlast line")
    with smtplib.SMTP(p.host, p.port, timeout=10) as s:
        code, caps = s.ehlo("client.test")
        assert code == 250 and b"PIPELINING" in caps
        assert b"SIZE 10240000" in caps and b"8BITMIME" in caps
        assert b"ENHANCEDSTATUSCODES" in caps
        assert b"STARTTLS" not in caps and b"AUTH" not in caps
        assert s.sendmail("a@b.test", ["c@d.test", "e@f.test"], body,
                          mail_options=["BODY=8BITMIME"]) == {}
    m, = p.messages()
    assert m["from"] == "a@b.test" and m["rcpts"] == ["c@d.test", "e@f.test"]
    assert m["helo"] == "client.test" and m["esmtp"] is True
    assert m["body"] == "8BITMIME" and m["auth"] is None
    assert m["declared"] == len(body)
    assert m["size"] == len(body) + 2
    assert m["sha256"] == sha(body + b"\r\n")
    assert wait_until(lambda: "event=end" in p.logtext())
    assert "event=message" in p.logtext()


def test_smtplib_null_sender_helo_and_8bit(probe):
    p = probe()
    body = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    with smtplib.SMTP(p.host, p.port, timeout=10) as s:
        s.helo("old.client")
        s.sendmail("", ["Postmaster"], body)
    m, = p.messages()
    assert m["from"] == "" and m["rcpts"] == ["Postmaster"]
    assert m["esmtp"] is False and m["eight_bit"] is True
    assert m["sha256"] == sha(body)


def test_smtplib_starttls_and_auth(probe, tmp_path):
    cert, key = make_cert(tmp_path / "tls", cn="probe.test")
    p = probe("--tls-cert", str(cert), "--tls-key", str(key))
    with smtplib.SMTP(p.host, p.port, timeout=10) as s:
        code, caps = s.ehlo()
        assert b"STARTTLS" in caps and b"AUTH" not in caps
        s.starttls(context=client_ctx())
        code, caps = s.ehlo()
        assert b"STARTTLS" not in caps and b"AUTH PLAIN LOGIN" in caps
        s.login("u", "p")
        s.sendmail("a@b.test", ["c@d.test"], b"Subject: tls\r\n\r\nhi\r\n")
    m, = p.messages()
    assert m["tls"] is True and m["auth"] == "u"
    assert wait_until(lambda: "tls=TLSv1" in p.logtext())


def test_auth_login_and_plain_over_plaintext_when_allowed(probe):
    p = probe("--auth-plaintext", "--untrusted")
    with smtplib.SMTP(p.host, p.port, timeout=10) as s:
        s.ehlo()
        s.login("u", "p")      # smtplib prefers PLAIN? it tries in order
        s.sendmail("a@b.test", ["c@d.test"], b"x\r\n")
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("AUTH LOGIN") == (334, ["VXNlcm5hbWU6"])
    assert c.cmd(base64.b64encode(b"u").decode()) == (334, ["UGFzc3dvcmQ6"])
    assert c.cmd(base64.b64encode(b"p").decode())[0] == 235
    assert c.cmd("AUTH PLAIN " + plain("u", "p"))[0] == 503   # already
    transaction(c)
    c.send(b"hello\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    # LOGIN with the user as initial response; PLAIN in a continuation.
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("AUTH LOGIN " + base64.b64encode(b"u").decode())[0] == 334
    assert c.cmd(base64.b64encode(b"p").decode())[0] == 235
    c.close()
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("AUTH PLAIN") == (334, [""])
    assert c.cmd(plain("u", "p"))[0] == 235
    c.close()
    assert [m["auth"] for m in p.messages()] == ["u", "u"]


def test_auth_refusals(probe, tmp_path):
    p = probe("--auth-plaintext")
    c = Raw(p.port)
    assert c.cmd("AUTH PLAIN " + plain("u", "p")) == (
        503, ["5.5.1 Error: send HELO/EHLO first"])
    ehlo(c)
    assert c.cmd("AUTH CRAM-MD5")[0] == 504
    assert c.cmd("AUTH PLAIN") == (334, [""])
    assert c.cmd("*") == (501, ["5.7.0 Authentication aborted"])
    assert c.cmd("AUTH PLAIN not-base64!")[0] == 501
    assert c.cmd("AUTH PLAIN =")[0] == 501
    assert c.cmd("AUTH LOGIN")[0] == 334
    assert c.cmd("***")[0] == 501
    # A temporary failure of the owner's check.
    assert c.cmd("AUTH PLAIN " + plain("temp", "x"))[0] == 454
    # An authorization identity other than the user: the owner refuses.
    assert c.cmd("AUTH PLAIN " + plain("u", "p", authz="admin"))[0] == 535
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("AUTH PLAIN " + plain("u", "p"))[0] == 503  # in a txn
    c.close()
    # Without TLS and without the plaintext flag: not offered, refused.
    cert, key = make_cert(tmp_path / "tls", cn="probe.test")
    q = probe("--tls-cert", str(cert), "--tls-key", str(key))
    c = Raw(q.port)
    assert not any(x.startswith("AUTH") for x in ehlo(c))
    assert c.cmd("AUTH PLAIN " + plain("u", "p")) == (
        538, ["5.7.11 Encryption required for requested authentication "
              "mechanism"])
    c.close()


def test_bad_auth_is_delayed_then_closed_and_never_logged(probe):
    """Each failure waits the owner's delay (doubling per failure from the
    address); the third ends the session with 421 4.7.0."""
    p = probe("--auth-plaintext", "--auth-delay-ms", "200",
              "--max-auth-failures", "3", trace=True)
    c = Raw(p.port)
    ehlo(c)
    took = []
    for i in range(3):
        t = time.monotonic()
        code, text = c.cmd("AUTH PLAIN " + plain("u", PASSWORD_BAD))
        took.append(time.monotonic() - t)
        assert code == (535 if i < 2 else 421), text
    assert text == ["4.7.0 probe.test Error: too many authentication "
                    "failures"]
    assert c.closed()
    assert took[0] >= 0.19 and took[1] >= 0.39 and took[2] >= 0.79, took
    # A new session from the same address is penalised more still.
    c = Raw(p.port)
    ehlo(c)
    t = time.monotonic()
    assert c.cmd("AUTH LOGIN")[0] == 334
    assert c.cmd(base64.b64encode(b"u").decode())[0] == 334
    assert c.cmd(base64.b64encode(PASSWORD_BAD.encode()).decode())[0] == 535
    assert time.monotonic() - t >= 1.5
    # ... and a good password still works after it.
    assert c.cmd("AUTH PLAIN " + plain("u", "p"))[0] == 235
    c.close()
    log = p.logtext()
    assert "event=auth-failed" in log and "failures=3" in log
    assert PASSWORD_BAD not in log
    assert plain("u", PASSWORD_BAD) not in log
    assert base64.b64encode(PASSWORD_BAD.encode()).decode() not in log


def test_relay_policy_is_the_owners(probe):
    p = probe("--auth-plaintext", "--untrusted")
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<c@d.test>") == (554,
                                           ["5.7.1 Relay access denied"])
    assert c.cmd("DATA") == (554, ["5.5.1 Error: no valid recipients"])
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("AUTH PLAIN " + plain("u", "p"))[0] == 235
    transaction(c)
    c.send(b"x\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    assert p.messages()[0]["auth"] == "u"


@pytest.mark.skipif(shutil.which("swaks") is None,
                    reason="swaks is not installed (apt-get install swaks)")
def test_swaks(probe, tmp_path):
    cert, key = make_cert(tmp_path / "tls", cn="probe.test")
    p = probe("--tls-cert", str(cert), "--tls-key", str(key))
    base = ["swaks", "--server", p.host, "--port", str(p.port),
            "--from", "a@b.test", "--to", "c@d.test,e@f.test",
            "--helo", "swaks.test", "--timeout", "10"]
    r = subprocess.run(base + ["--pipeline"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(base + ["--tls", "--auth", "LOGIN", "--auth-user",
                               "u", "--auth-password", "p"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(base + ["--tls", "--auth", "PLAIN", "--auth-user",
                               "u", "--auth-password", "p", "--pipeline"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(base + ["--tls", "--auth", "PLAIN", "--auth-user",
                               "u", "--auth-password", "bad"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "535" in r.stdout
    ms = p.messages()
    assert len(ms) == 3
    assert [m["tls"] for m in ms] == [False, True, True]
    assert [m["auth"] for m in ms] == [None, "u", "u"]
    assert all(m["rcpts"] == ["c@d.test", "e@f.test"] for m in ms)


# ------------------------------------------------------------ pipelining


def test_pipelined_transactions(probe):
    """A group of MAIL, RCPT..., DATA in one write is answered in order;
    the body, its dot, the next transaction and QUIT in another."""
    p = probe("--reply-delay-ms", "50")
    c = Raw(p.port)
    ehlo(c)
    c.send(b"MAIL FROM:<a@b.test> SIZE=20\r\nRCPT TO:<c@d.test>\r\n"
           b"RCPT TO:<e@f.test>\r\nDATA\r\n")
    assert [r[0] for r in c.replies(4)] == [250, 250, 250, 354]
    c.send(b"one\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<g@h.test>\r\n"
           b"DATA\r\n")
    assert [r[0] for r in c.replies(4)] == [250, 250, 250, 354]
    c.send(b"two\r\n.\r\nRSET\r\nQUIT\r\n")
    assert [r[0] for r in c.replies(3)] == [250, 250, 221]
    assert c.closed()
    ms = p.messages()
    assert [m["rcpts"] for m in ms] == [["c@d.test", "e@f.test"],
                                        ["g@h.test"]]
    assert [m["sha256"] for m in ms] == [sha(b"one\r\n"), sha(b"two\r\n")]


def test_auth_plain_may_be_pipelined(probe):
    """RFC 4954 4: AUTH PLAIN with an initial response may lead a group."""
    p = probe("--auth-plaintext", "--untrusted")
    c = Raw(p.port)
    ehlo(c)
    c.send(f"AUTH PLAIN {plain('u', 'p')}\r\nMAIL FROM:<a@b.test>\r\n"
           "RCPT TO:<c@d.test>\r\nDATA\r\n".encode())
    assert [r[0] for r in c.replies(4)] == [235, 250, 250, 354]
    c.close()


@pytest.mark.parametrize("burst", [
    b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n",
    b"HELO client.test\r\nMAIL FROM:<a@b.test>\r\n",
    b"RSET\r\nEHLO client.test\r\n",
])
def test_pipelining_before_ehlo_is_a_violation(probe, burst):
    """Postfix >= 3.9 (smtpd_forbid_unauth_pipelining = yes): 554 5.5.0
    and the connection is closed; nothing after is executed."""
    p = probe()
    c = Raw(p.port)
    c.send(burst)
    replies = []
    while True:
        r = c.reply()
        replies.append(r)
        if r[0] == 554:
            break
    assert r == (554, ["5.5.0 Error: SMTP protocol synchronization"])
    assert len(replies) <= 2
    assert c.closed()
    assert "event=pipelining-violation" in p.logtext()


def test_pipelining_after_helo_and_after_last_commands(probe):
    p = probe()
    # HELO offers no PIPELINING: a MAIL+RCPT group is a violation.
    c = Raw(p.port)
    assert c.cmd("HELO client.test")[0] == 250
    c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n")
    assert c.reply()[0] == 554
    assert c.closed()
    # DATA must end a group: the body may not follow it unasked.
    c = Raw(p.port)
    ehlo(c)
    c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n"
           b"Subject: eager\r\n\r\nbody\r\n.\r\n")
    assert [r[0] for r in c.replies(3)] == [250, 250, 554]
    assert c.closed()
    # Two NOOPs in one write.
    c = Raw(p.port)
    ehlo(c)
    c.send(b"NOOP\r\nNOOP\r\n")
    assert c.reply()[0] == 554
    assert c.closed()
    assert p.messages() == []


def test_command_before_greeting(probe):
    """An early talker (input before the 220 was sent) gets 554 5.5.0
    instead of a greeting and is disconnected."""
    p = probe("--greet-delay-ms", "300")
    c = Raw(p.port, greet=False)
    c.send(b"EHLO early.test\r\n")
    assert c.reply() == (554, ["5.5.0 Error: SMTP protocol synchronization"])
    assert c.closed()
    # A patient client is greeted after the delay.
    c = Raw(p.port)
    ehlo(c)
    c.close()
    assert "after=CONNECT" in p.logtext()


# ------------------------------------------------------------ limits


def test_command_line_limit(probe):
    """512 octets with CRLF pass; 513 are refused (500 5.5.2), the rest of
    the line skipped, and the session goes on."""
    p = probe()
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("NOOP " + "x" * (510 - 5))[0] == 250
    assert c.cmd("NOOP " + "x" * (511 - 5)) == (500,
                                                 ["5.5.2 Error: line too long"])
    # A huge line, sent in pieces: one refusal, then the session is fine.
    c.send(b"NOOP " + b"y" * 5000)
    time.sleep(0.1)
    c.send(b"z" * 5000 + b" QUIT\r\n")
    assert c.reply()[0] == 500
    assert c.cmd("NOOP")[0] == 250
    c.close()


def test_data_line_limit(probe):
    """A text line of 1000 octets with CRLF passes; 1001 refuse the message
    at its dot (500 5.5.2) and the session goes on."""
    p = probe()
    c = Raw(p.port)
    ehlo(c)
    transaction(c)
    ok = b"a" * 998 + b"\r\n"
    c.send(ok + b".\r\n")
    assert c.reply()[0] == 250
    transaction(c)
    c.send(b"b" * 999 + b"\r\nnext line\r\n" + b"c" * 70000 +
           b"\r\n.\r\n")
    assert c.reply() == (500, ["5.5.2 Error: message line longer than 1000 "
                               "octets"])
    assert c.cmd("NOOP")[0] == 250
    c.close()
    ms = p.messages()
    assert len(ms) == 1 and ms[0]["sha256"] == sha(ok)


def test_bare_lf_in_a_command(probe):
    p = probe()
    c = Raw(p.port)
    c.send(b"EHLO client.test\n")
    assert c.reply() == (550, ["5.5.2 Error: bare <LF> received"])
    assert c.closed()


@pytest.mark.parametrize("data", [
    b"Subject: smuggle\r\n\r\nhi\n.\nMAIL FROM:<x@evil.test>\r\n",
    b"Subject: smuggle\r\n\r\nhi\r\n.\nRCPT TO:<x@evil.test>\r\n.\r\n",
    b"line with a bare LF\nsecond\r\n.\r\n",
])
def test_bare_lf_in_data_drops_the_session(probe, data):
    """SMTP smuggling: only CRLF.CRLF ends a message; a bare LF ends the
    session (550 5.5.2, as Postfix 3.9 smtpd_forbid_bare_newline =
    reject) and the message is not taken."""
    p = probe()
    c = Raw(p.port)
    ehlo(c)
    transaction(c)
    c.send(data)
    assert c.reply() == (550, ["5.5.2 Error: bare <LF> received"])
    assert c.closed()
    assert p.messages() == []
    assert "event=bare-lf" in p.logtext()


def test_bare_cr_and_nul_refuse_the_message(probe):
    p = probe()
    c = Raw(p.port)
    ehlo(c)
    transaction(c)
    c.send(b"a bare\rCR\r\n.\r\n")
    assert c.reply() == (550, ["5.6.0 Error: bare <CR> received"])
    transaction(c)
    c.send(b"a NUL \0 here\r\n.\r\n")
    assert c.reply() == (550, ["5.6.0 Error: NUL octet in message"])
    # NUL in a command.
    assert c.cmd("NOOP a\0b")[0] == 501
    transaction(c)
    c.send(b"clean\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    ms = p.messages()
    assert len(ms) == 1 and ms[0]["sha256"] == sha(b"clean\r\n")
    assert p.logtext().count("event=message-refused") == 2


def test_message_size_limit(probe):
    p = probe("--max-size", "1000")
    c = Raw(p.port)
    caps = ehlo(c)
    assert "SIZE 1000" in caps
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=1001") == (
        552, ["5.3.4 Error: message file too big"])
    # Declared small, sent big: refused at the dot, after all was read.
    transaction(c)
    c.send((b"x" * 98 + b"\r\n") * 50 + b".\r\n")
    assert c.reply() == (552, ["5.3.4 Error: message file too big"])
    # Exactly the limit passes.
    transaction(c)
    body = (b"y" * 98 + b"\r\n") * 10
    c.send(body + b".\r\n")
    assert c.reply()[0] == 250
    c.close()
    ms = p.messages()
    assert len(ms) == 1 and ms[0]["size"] == 1000


def test_too_many_recipients(probe):
    p = probe("--max-rcpts", "3")
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    for i in range(3):
        assert c.cmd(f"RCPT TO:<r{i}@d.test>")[0] == 250
    assert c.cmd("RCPT TO:<r3@d.test>") == (
        452, ["4.5.3 Error: too many recipients"])
    assert c.cmd("DATA")[0] == 354
    c.send(b"x\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    assert p.messages()[0]["rcpts"] == ["r0@d.test", "r1@d.test",
                                        "r2@d.test"]


def test_too_many_errors(probe):
    p = probe("--max-errors", "3")
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("XYZZY") == (500, ["5.5.2 Error: command not recognized"])
    assert c.cmd("RCPT TO:<c@d.test>") == (503,
                                           ["5.5.1 Error: need MAIL command"])
    c.send(b"MAIL FROM:<bad>\r\n")
    assert c.reply()[0] == 501
    assert c.reply() == (421, ["4.7.0 probe.test Error: too many errors"])
    assert c.closed()


def test_sequence_and_syntax_errors(probe):
    p = probe()
    c = Raw(p.port)
    assert c.cmd("MAIL FROM:<a@b.test>") == (
        503, ["5.5.1 Error: send HELO/EHLO first"])
    ehlo(c)
    assert c.cmd("DATA") == (503, ["5.5.1 Error: need RCPT command"])
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("MAIL FROM:<a@b.test>") == (503,
                                             ["5.5.1 Error: nested MAIL command"])
    assert c.cmd("STARTTLS")[0] == 503
    assert c.cmd("RCPT TO:<c@d.test> NOTIFY=NEVER")[0] == 555
    assert c.cmd("RCPT TO:<no-domain>")[0] == 501
    assert c.cmd("VRFY c@d.test")[0] == 252
    assert c.cmd("EXPN list")[0] == 502
    assert c.cmd("HELP")[0] == 214
    assert c.cmd("STARTTLS") == (503, ["5.5.1 Error: MAIL transaction in "
                                       "progress"])
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("STARTTLS") == (502, ["5.5.1 Error: command not "
                                       "implemented"])
    assert c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME")[0] == 555
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=x")[0] == 501
    assert c.cmd("QUIT")[0] == 221
    assert c.closed()


def test_owner_hooks_refuse(probe):
    p = probe()
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("MAIL FROM:<busy@b.test>") == (
        452, ["4.3.1 Insufficient system storage, try later"])
    transaction(c, rcpts=("reject@d.test",))
    c.send(b"x\r\n.\r\n")
    assert c.reply()[0] == 554
    assert c.cmd("MAIL FROM:<down@b.test>")[0] == 421
    assert c.closed()
    assert p.messages() == []


@pytest.mark.parametrize("code", ["421", "554"])
def test_connection_refused_by_the_owner(probe, code):
    p = probe("--refuse", code)
    c = Raw(p.port, greet=False)
    assert c.reply()[0] == int(code)
    if code == "421":
        assert c.closed()
        return
    # RFC 5321 3.1: after a 554 greeting only QUIT is served.
    assert c.cmd("EHLO client.test") == (503,
                                         ["5.5.1 Error: no SMTP service here"])
    assert c.cmd("QUIT")[0] == 221
    assert c.closed()


# ------------------------------------------------------------ STARTTLS


def test_starttls_discards_injected_commands(probe, tmp_path):
    """CVE-2011-0411: plain text pipelined behind STARTTLS is dropped,
    never executed in the TLS session; STARTTLS twice is refused; EHLO is
    needed again after it."""
    cert, key = make_cert(tmp_path / "tls", cn="probe.test")
    p = probe("--tls-cert", str(cert), "--tls-key", str(key))
    c = Raw(p.port)
    assert "STARTTLS" in ehlo(c)
    c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert c.reply() == (220, ["2.0.0 Ready to start TLS"])
    assert c.buf == b""
    c.sock = client_ctx().wrap_socket(c.sock, server_hostname="probe.test")
    # The first reply in TLS answers our command, not an injected one.
    assert c.cmd("MAIL FROM:<a@b.test>") == (
        503, ["5.5.1 Error: send HELO/EHLO first"])
    caps = ehlo(c)
    assert "STARTTLS" not in caps and "AUTH PLAIN LOGIN" in caps
    assert c.cmd("STARTTLS") == (554, ["5.5.1 Error: TLS already active"])
    assert c.cmd("AUTH PLAIN " + plain("u", "p"))[0] == 235
    transaction(c)
    c.send(b"secret\r\n.\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("QUIT")[0] == 221
    c.close()
    m, = p.messages()
    assert m["from"] == "a@b.test" and m["tls"] is True
    assert "event=starttls-injection" in p.logtext()


# ------------------------------------------------------------ time


def test_slow_data_is_cut(probe):
    p = probe("--data-ms", "1000", "--idle-ms", "5000")
    c = Raw(p.port)
    ehlo(c)
    transaction(c)
    t = time.monotonic()
    c.sock.settimeout(0.2)
    while time.monotonic() < t + 5 and b"\r\n" not in c.buf:
        try:
            c.send(b"drip\r\n")        # a line every 0.2 s: never idle
        except OSError:
            break
        try:
            chunk = c.sock.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            break
        c.buf += chunk
    assert c.buf.startswith(b"421 4.4.2 probe.test Error: DATA time limit "
                            b"exceeded\r\n"), c.buf
    assert 0.9 <= time.monotonic() - t < 3
    assert c.closed()
    assert p.messages() == []


def test_idle_timeout(probe):
    p = probe("--idle-ms", "500")
    c = Raw(p.port)
    ehlo(c)
    t = time.monotonic()
    assert c.reply() == (421, ["4.4.2 probe.test Error: timeout exceeded"])
    assert 0.4 <= time.monotonic() - t < 3
    assert c.closed()
    assert wait_until(lambda: "reason=\"idle timeout\"" in p.logtext())


# ------------------------------------------------------------ disconnects


def stage_connect(c):
    pass


def stage_ehlo(c):
    ehlo(c)


def stage_mail(c):
    ehlo(c)
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250


def stage_rcpt(c):
    stage_mail(c)
    assert c.cmd("RCPT TO:<c@d.test>")[0] == 250


def stage_data(c):
    stage_rcpt(c)
    assert c.cmd("DATA")[0] == 354


def stage_body(c):
    stage_data(c)
    c.send(b"Subject: half\r\n\r\nhalf a message\r\n")


def stage_partial_line(c):
    stage_data(c)
    c.send(b"Subject: half\r\n\r\nno end of li")


def stage_auth(c):
    ehlo(c)
    assert c.cmd("AUTH LOGIN")[0] == 334


def stage_long_line(c):
    ehlo(c)
    c.send(b"NOOP " + b"x" * 3000)


@pytest.mark.parametrize("stage", [
    stage_connect, stage_ehlo, stage_mail, stage_rcpt, stage_data,
    stage_body, stage_partial_line, stage_auth, stage_long_line,
], ids=lambda f: f.__name__[6:])
@pytest.mark.parametrize("how", ["close", "half-close"])
def test_disconnect_at_each_stage(probe, stage, how):
    """The client goes away: the session ends (logged, freed), nothing
    half-received is taken, and the server goes on serving."""
    p = probe("--auth-plaintext")
    c = Raw(p.port)
    stage(c)
    if how == "close":
        c.close()
    else:
        c.sock.shutdown(socket.SHUT_WR)
        c.closed()
        c.close()
    assert wait_until(lambda: "event=end" in p.logtext(), timeout=5)
    assert p.alive()
    assert p.messages() == []
    with smtplib.SMTP(p.host, p.port, timeout=10) as s:
        s.sendmail("a@b.test", ["c@d.test"], b"after\r\n")
    assert len(p.messages()) == 1


def test_disconnect_while_the_owner_spools(probe):
    """Gone after its final dot: the owner already has the whole message
    (so it is kept: the client will not see 250 and may send it again,
    the classic RFC 1047 duplicate); its late answer is ignored."""
    p = probe("--reply-delay-ms", "300")
    c = Raw(p.port)
    ehlo(c)
    transaction(c)
    c.send(b"complete\r\n.\r\n")
    time.sleep(0.05)
    c.close()
    assert wait_until(lambda: "event=end" in p.logtext(), timeout=5)
    time.sleep(0.4)
    assert p.alive()
    assert len(p.messages()) == 1


def test_half_close_after_quit_still_answers(probe):
    """A client that writes its last commands and half-closes gets them
    carried out and answered, even behind a message being spooled."""
    p = probe("--reply-delay-ms", "200")
    c = Raw(p.port)
    ehlo(c)
    transaction(c)
    c.send(b"last\r\n.\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert [r[0] for r in c.replies(2)] == [250, 221]
    assert c.closed()
    assert len(p.messages()) == 1


def test_disconnect_during_tls_handshake(probe, tmp_path):
    cert, key = make_cert(tmp_path / "tls", cn="probe.test")
    p = probe("--tls-cert", str(cert), "--tls-key", str(key))
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("STARTTLS")[0] == 220
    c.send(b"\x16\x03\x01\x00")          # a ClientHello cut short
    c.close()
    assert wait_until(lambda: "event=end" in p.logtext(), timeout=5)
    assert p.alive()


# ------------------------------------------------------------ output


def rss_kb(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_client_that_does_not_read(probe):
    """Replies are not buffered without bound: the server stops reading a
    client that sends and never reads, so the client's writes block."""
    p = probe("--max-rcpts", "10", "--idle-ms", "3000")
    before = rss_kb(p.proc.pid)
    c = Raw(p.port)
    ehlo(c)
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    c.sock.settimeout(2.0)
    chunk = b"RCPT TO:<c@d.test>\r\n" * 5000      # 100 KB, 5000 replies
    sent = 0
    with pytest.raises(socket.timeout):
        for _ in range(2000):                    # up to 200 MB
            c.sock.sendall(chunk)
            sent += len(chunk)
    assert sent < 100 * 1024 * 1024, sent
    assert rss_kb(p.proc.pid) - before < 32 * 1024
    c.close()
    assert wait_until(lambda: "event=end" in p.logtext(), timeout=10)
    assert p.alive()
    with smtplib.SMTP(p.host, p.port, timeout=10) as s:
        s.noop()
