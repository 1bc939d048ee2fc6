"""Self-test of the Dovecot fixture (dovecot.py), without mailroom.

Checks, with plain clients (poplib, raw sockets, imaplib, smtplib.LMTP),
that the throwaway Dovecot does what the pop3-proxy tests rely on: POP3
logins and delivery through LMTP, failure delays and the auth penalty,
password changes, XCLIENT from a trusted network, OX push notifications,
AUTH PLAIN, the capabilities Dovecot advertises, and TLS (STLS, POP3S,
XCLIENT over TLS).  What was observed is
written down in dovecot.py's docstring.  Needs root and Dovecot 2.3; no
mailroom binary.
"""
import base64
import imaplib
import poplib
import socket
import ssl
import time

import pytest

from dovecot import Dovecot, PushReceiver
from dovecot import dovecot  # noqa: F401  (the fixture)
from peers import make_cert, wait_until
from procstat import cmdline, descendants


class RawPop3:
    """A line-level POP3 client, for what poplib will not send (XCLIENT,
    pipelined commands) or to look at the exact replies."""

    def __init__(self, d, timeout=10, context=None):
        """context: connect to d.pop3s_port with TLS from the start."""
        self.sock = socket.create_connection(
            (d.host, d.pop3s_port if context else d.pop3_port),
            timeout=timeout)
        if context:
            self.sock = context.wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def stls(self, context):
        """STLS, then TLS on the same connection; STLS's reply."""
        reply = self.cmd("STLS")[0]
        assert reply.startswith("+OK"), reply
        self.file.close()
        self.sock = context.wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")
        return reply

    def line(self):
        return self.file.readline().decode().rstrip("\r\n")

    def cmd(self, *lines):
        """Send lines in one write; the first reply line of each."""
        self.sock.sendall("".join(f"{x}\r\n" for x in lines).encode())
        return [self.line() for _ in lines]

    def multiline(self, command):
        """The lines of a multi-line reply (after its +OK), dot removed."""
        first = self.cmd(command)[0]
        assert first.startswith("+OK"), first
        lines = []
        while (line := self.line()) != ".":
            lines.append(line)
        return lines

    def close(self):
        self.file.close()
        self.sock.close()


def plain(user, password):
    """The base64 SASL PLAIN response for user/password (no authzid)."""
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


USERS = ["alice", "bob", "fred", "sam", "xavier", "paula", "carl"]
"""The users of the shared Dovecot; each one's password is NAME-pw."""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One Dovecot for the tests that only log in and read (each with its
    own user), without the auth penalty so that their failures cannot slow
    each other down.  Stopping an instance takes Dovecot a second."""
    d = Dovecot(tmp_path_factory.mktemp("dovecot"), auth_penalty=False,
                users={u: f"{u}-pw" for u in USERS})
    yield d
    d.stop()


def timed_login(d, user, password):
    """(error or None, seconds) of a poplib USER/PASS login."""
    p = d.pop3()
    start = time.monotonic()
    try:
        p.user(user)
        p.pass_(password)
        error = None
    except poplib.error_proto as e:
        error = e
    elapsed = time.monotonic() - start
    p.close()
    return error, elapsed


# ------------------------------------------------------------------ POP3

def test_login_stat_deliver_retr(shared):
    d = shared
    p = d.pop3()
    assert p.getwelcome().startswith(b"+OK")
    p.user("alice")
    p.pass_("alice-pw")
    assert p.stat() == (0, 0)
    p.quit()
    assert d.message_count("alice") == 0

    msgid = d.deliver("alice", subject="First", body="Line one.\r\n")
    assert d.message_count("alice") == 1
    assert d.message_count("bob") == 0

    p = d.pop3()
    p.user("alice")
    p.pass_("alice-pw")
    count, size = p.stat()
    assert count == 1 and size > 0
    resp, lines, octets = p.retr(1)
    assert resp.startswith(b"+OK")
    assert b"Subject: First" in lines
    assert f"Message-ID: {msgid}".encode() in lines
    assert lines[-1] == b"Line one."
    p.quit()

    assert wait_until(lambda: d.pop3_logins("alice") == 2)
    assert d.pop3_logins("bob") == 0
    assert d.failed_logins("alice") == 0
    assert d.client_addresses("alice") == ["127.0.0.1", "127.0.0.1"]


def test_restart_then_stop_leaves_nothing_behind(dovecot, tmp_path):
    d = dovecot()
    d.deliver("alice")
    port, workdir = d.pop3_port, d.dir
    master, children = d.proc.pid, descendants(d.proc.pid)
    assert children
    d.stop(cleanup=False)                   # the backend goes away...
    assert not cmdline(master)
    assert all(not cmdline(pid) for pid in children)
    with pytest.raises(OSError):
        socket.create_connection((d.host, port), timeout=2).close()
    d.start()                               # ...and comes back, mail and all
    assert d.pop3_port == port
    p = d.pop3()
    p.user("alice")
    p.pass_("pw1")
    assert p.stat()[0] == 1
    p.quit()
    assert wait_until(lambda: d.pop3_logins("alice") == 1)
    master, children = d.proc.pid, descendants(d.proc.pid)
    d.stop()
    assert not cmdline(master)
    assert all(not cmdline(pid) for pid in children)
    assert not workdir.exists()
    # The log outlives the instance, for post-mortems.
    assert d.log_path.parent == tmp_path
    assert d.log_text().count("starting up") == 2
    assert d.pop3_logins("alice") == 1


# ------------------------------------------------ failures and penalties

def test_wrong_password_fails_fast_without_delay_and_penalty(shared):
    d = shared                      # auth_failure_delay=0, no penalty
    for user in ("fred", "fred", "nobody"):
        error, elapsed = timed_login(d, user, "wrong")
        assert isinstance(error, poplib.error_proto)
        assert error.args[0] == b"-ERR [AUTH] Authentication failed."
        # 2.3.19 still answers on its next 500 ms tick.
        assert elapsed < 1.0, elapsed
    error, elapsed = timed_login(d, "fred", "fred-pw")
    assert error is None and elapsed < 1.0, (error, elapsed)
    assert wait_until(lambda: d.failed_logins("fred") == 2)
    assert d.failed_logins("nobody") == 1
    assert wait_until(lambda: d.pop3_logins("fred") == 1)


def test_default_failure_delay_and_per_address_penalty(dovecot):
    d = dovecot(auth_failure_delay=None)    # Dovecot's 2 s, and penalty
    error, elapsed = timed_login(d, "alice", "wrong")
    assert isinstance(error, poplib.error_proto)
    assert 1.5 <= elapsed < 3.5, elapsed
    # Another address (given with XCLIENT) is not slowed down...
    c = RawPop3(d)
    start = time.monotonic()
    assert c.cmd("XCLIENT ADDR=127.0.0.9 PORT=4242", "USER alice",
                 "PASS pw1") == ["+OK Updated", "+OK", "+OK Logged in."]
    assert time.monotonic() - start < 1.0
    c.close()
    # ...but the failing one waits 4 s, even with the right password.
    error, elapsed = timed_login(d, "alice", "pw1")
    assert error is None and 3.5 <= elapsed < 6.0, (error, elapsed)
    assert wait_until(lambda: d.failed_logins("alice") == 1)


def test_set_password(shared):
    d = shared
    # A login in the same second as the change must not hide it, nor a
    # file of the same size as before.
    assert timed_login(d, "sam", "sam-pw")[0] is None
    d.set_password("sam", "sam-PW")
    assert timed_login(d, "sam", "sam-pw")[0] is not None
    assert timed_login(d, "sam", "sam-PW")[0] is None
    # A new user, with an awkward password.
    d.set_password("carol", "c: x\u00e9")
    assert timed_login(d, "carol", "c: x\u00e9")[0] is None
    d.deliver("carol")
    assert d.message_count("carol") == 1


# ------------------------------------------------------------- XCLIENT

def test_xclient_from_trusted_network_sets_client_address(shared):
    d = shared
    c = RawPop3(d)
    assert c.greeting == "+OK [XCLIENT] Dovecot (Debian) ready."
    assert "XCLIENT" not in c.multiline("CAPA")
    assert c.cmd("XCLIENT ADDR=not-an-ip") == ["-ERR Invalid parameters"]
    assert c.cmd("XCLIENT ADDR=127.0.0.9 PORT=4242") == ["+OK Updated"]
    assert c.cmd("USER xavier", "PASS xavier-pw") == ["+OK",
                                                      "+OK Logged in."]
    assert c.cmd("XCLIENT ADDR=127.0.0.10") == [
        "-ERR Unknown command: XCLIENT"]
    c.close()
    # Pipelined with the login, IPv6, lower case, a session id.
    c = RawPop3(d)
    assert c.cmd("xclient addr=2001:db8::1 port=5555 session=abc",
                 "USER xavier", "PASS xavier-pw") == [
        "+OK Updated", "+OK", "+OK Logged in."]
    c.close()
    assert wait_until(lambda: d.pop3_logins("xavier") == 2)
    assert d.client_endpoints("xavier") == [("127.0.0.9", 4242),
                                            ("2001:db8::1", 5555)]
    assert "session=<abc>" in d.log_text()


def test_xclient_from_untrusted_network_is_ignored(dovecot):
    d = dovecot(trusted_networks=None)
    c = RawPop3(d)
    assert c.greeting == "+OK Dovecot (Debian) ready."
    assert c.cmd("XCLIENT ADDR=127.0.0.9 PORT=4242") == [
        "+OK You are not from trusted IP - ignoring"]
    assert c.cmd("USER alice", "PASS pw1") == ["+OK", "+OK Logged in."]
    c.close()
    assert wait_until(lambda: d.pop3_logins("alice") == 1)
    assert d.client_addresses() == ["127.0.0.1"]


# ------------------------------------------------------------------ push

def test_push_notification_after_lmtp_delivery(dovecot, capsys):
    receiver = PushReceiver()
    try:
        d = dovecot(users={"alice": "pw1", "bob": "pw2"},
                    push_url=receiver.url)
        d.deliver("alice", subject="Before")    # push not enabled yet
        # The key on INBOX (not on the server) does not enable push.
        imap = imaplib.IMAP4(d.host, d.imap_port, timeout=10)
        imap.login("bob", "pw2")
        assert imap.xatom("SETMETADATA", "INBOX",
                          '(/private/vendor/vendor.dovecot/http-notify '
                          '"user=bob")')[0] == "OK"
        imap.logout()
        d.deliver("bob", subject="Bob's")
        d.enable_push("alice")
        d.deliver("alice", subject="Hello there", body="Body text.\r\n",
                  sender="Bob <bob@example.test>")
        [req] = receiver.wait(1)
        time.sleep(0.3)                         # nothing else comes
        assert len(receiver.requests) == 1
        assert req.method == "PUT" and req.path == "/push"
        assert req.headers["Content-Type"] == "application/json; charset=utf-8"
        assert "Authorization" not in req.headers
        body = req.json()
        assert body["user"] == "alice" and body["event"] == "messageNew"
        assert body["folder"] == "INBOX" and body["imap-uid"] == 2
        assert body["from"] == "Bob <bob@example.test>"
        assert body["subject"] == "Hello there"
        assert body["snippet"] == "Body text."
        assert body["unseen"] == 2
        assert isinstance(body["imap-uidvalidity"], int)
        assert d.message_count("alice") == 2 and d.message_count("bob") == 1
        with capsys.disabled():
            print(f"\npush request: {req.method} {req.path}\n"
                  f"headers: {req.headers}\nbody: {req.body.decode()}")
    finally:
        receiver.stop()


# -------------------------------------------------- AUTH and capabilities

def test_auth_plain(shared):
    d = shared
    # With an initial response (RFC 5034), through poplib.
    p = d.pop3()
    assert p._shortcmd(f"AUTH PLAIN {plain('paula', 'paula-pw')}") == (
        b"+OK Logged in.")
    assert p.stat() == (0, 0)
    p.quit()
    # Without one: a "+ " continuation first.
    c = RawPop3(d)
    assert c.cmd("AUTH PLAIN") == ["+ "]
    assert c.cmd(plain("paula", "paula-pw")) == ["+OK Logged in."]
    c.close()
    c = RawPop3(d)
    assert c.cmd(f"AUTH PLAIN {plain('paula', 'bad')}") == [
        "-ERR [AUTH] Authentication failed."]
    c.close()
    assert wait_until(lambda: d.pop3_logins("paula") == 2)
    assert wait_until(lambda: d.failed_logins("paula") == 1)


def test_capabilities(shared, capsys):
    c = RawPop3(shared)
    before = c.multiline("CAPA")
    assert before == ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING",
                      "AUTH-RESP-CODE", "USER", "SASL PLAIN LOGIN"]
    assert c.cmd("USER carl", "PASS carl-pw") == ["+OK", "+OK Logged in."]
    after = c.multiline("CAPA")
    assert after == ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING",
                     "AUTH-RESP-CODE"]
    c.close()
    with capsys.disabled():
        print(f"\nCAPA before login: {before}\nCAPA after login: {after}")


# ------------------------------------------------------------------- TLS

TLS_USERS = ["tess", "tim", "tom", "tina"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """One Dovecot with tls=make_cert(...), for the TLS tests (each with
    its own user)."""
    tmp = tmp_path_factory.mktemp("dovecot-tls")
    cert = make_cert(tmp / "cert", cn="pop.test", ips=["127.0.0.1"])
    d = Dovecot(tmp, auth_penalty=False, tls=cert,
                users={u: f"{u}-pw" for u in TLS_USERS})
    yield d
    d.stop()


def unverified():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_tls_none_has_no_pop3s(shared):
    assert shared.pop3s_port is None
    assert "ssl = no" in (shared.dir / "dovecot.conf").read_text()


def test_stls_then_user_pass(tls):
    d = tls
    assert d.pop3s_port and d.pop3s_port != d.pop3_port
    for ctx in (unverified(), d.ssl_context()):
        p = d.pop3()
        assert p.stls(ctx).startswith(b"+OK")
        assert isinstance(p.sock, ssl.SSLSocket)
        p.user("tess")
        p.pass_("tess-pw")
        assert p.stat() == (0, 0)
        p.quit()
    # Plaintext USER/PASS still works without STLS.
    p = d.pop3()
    p.user("tess")
    p.pass_("tess-pw")
    p.quit()
    assert wait_until(lambda: d.pop3_logins("tess") == 3)
    assert [m["rip"] for m in d._logins(user="tess")] == ["127.0.0.1"] * 3
    logins = [l for l in d.log_text().splitlines()
              if "Login: user=<tess>" in l]
    assert [" TLS," in l for l in logins] == [True, True, False]


def test_pop3s(tls):
    d = tls
    d.deliver("tim", subject="Over TLS")
    p = d.pop3_ssl()
    assert p.getwelcome().startswith(b"+OK")
    p.user("tim")
    p.pass_("tim-pw")
    assert p.stat()[0] == 1
    assert b"Subject: Over TLS" in p.retr(1)[1]
    p.quit()
    p = d.pop3_ssl(context=unverified())
    p.user("tim")
    p.pass_("tim-pw")
    p.quit()
    assert wait_until(lambda: d.pop3_logins("tim") == 2)


def test_tls_capabilities(tls, capsys):
    d = tls
    c = RawPop3(d)
    before = c.multiline("CAPA")
    assert before == ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING",
                      "AUTH-RESP-CODE", "STLS", "USER", "SASL PLAIN LOGIN"]
    assert c.stls(d.ssl_context()) == "+OK Begin TLS negotiation now."
    after = c.multiline("CAPA")
    assert after == [x for x in before if x != "STLS"]
    c.close()
    c = RawPop3(d, context=d.ssl_context())
    pop3s = c.multiline("CAPA")
    assert pop3s == after
    c.close()
    with capsys.disabled():
        print(f"\nTLS CAPA before STLS: {before}\nafter STLS: {after}\n"
              f"on pop3s: {pop3s}")


def test_xclient_over_tls(tls):
    d = tls
    # After STLS: the greeting had [XCLIENT], and XCLIENT still works.
    c = RawPop3(d)
    assert c.greeting == "+OK [XCLIENT] Dovecot (Debian) ready."
    c.stls(d.ssl_context())
    assert c.cmd("XCLIENT ADDR=127.0.0.9 PORT=4242", "USER tom",
                 "PASS tom-pw") == ["+OK Updated", "+OK", "+OK Logged in."]
    c.close()
    # On the pop3s port: same greeting, XCLIENT works.
    c = RawPop3(d, context=d.ssl_context())
    assert c.greeting == "+OK [XCLIENT] Dovecot (Debian) ready."
    assert c.cmd("XCLIENT ADDR=127.0.0.10 PORT=4343") == ["+OK Updated"]
    assert c.cmd("USER tom", "PASS tom-pw") == ["+OK", "+OK Logged in."]
    c.close()
    # XCLIENT before STLS survives the TLS handshake.
    c = RawPop3(d)
    assert c.cmd("XCLIENT ADDR=127.0.0.11 PORT=1111") == ["+OK Updated"]
    c.stls(d.ssl_context())
    assert c.cmd("USER tom", "PASS tom-pw") == ["+OK", "+OK Logged in."]
    c.close()
    assert wait_until(lambda: d.pop3_logins("tom") == 3)
    assert d.client_endpoints("tom") == [("127.0.0.9", 4242),
                                         ("127.0.0.10", 4343),
                                         ("127.0.0.11", 1111)]
