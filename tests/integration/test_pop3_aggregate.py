"""POP3 aggregation (issue 5, SPEC A2-A6): `mailroom pop3-proxy --aggregate`
in front of two real Dovecot instances (and, for faults no real server
makes on demand, a scripted POP3 peer), with Python's poplib, curl and
fetchmail as clients.

The user "joe" is in the registry with two backend accounts: a1 on Dovecot
one (2 messages) and b2 on Dovecot two (3 messages).
"""
import base64
import hashlib
import itertools
import json
import os
import pathlib
import poplib
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port
from dovecot import Dovecot

ITER = "registry.pbkdf2_iterations=1000"


class Registry:
    def __init__(self, mailroom, tmp_path):
        self.mailroom = mailroom
        self.store = tmp_path / "registry.db"
        self.key = tmp_path / "registry.key"

    def run(self, *args, check=True):
        r = subprocess.run([self.mailroom, "registry", "--store",
                            str(self.store), "--key-file", str(self.key),
                            "-o", ITER, *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"registry {args}: {r.returncode} "
                                 f"{r.stderr}")
        return r

    def user(self, name, password, apop=None):
        args = ["user", "add", name, "--password", password]
        if apop:
            args += ["--apop-secret", apop]
        self.run(*args)

    def account(self, user, port, login, secret, host="127.0.0.1"):
        out = self.run("account", "add", user, "--host", host, "--port",
                       port, "--login", login, "--secret", secret).stdout
        return int(out.split()[-1])


class Proxy:
    def __init__(self, mailroom, reg, tmp_path, extra=()):
        self.acct = tmp_path / "agg-accounting.jsonl"
        self.err_path = tmp_path / f"agg-{time.monotonic_ns()}.err"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [mailroom, "pop3-proxy", "--aggregate", "--store",
             str(reg.store), "--key-file", str(reg.key), "--listen",
             "127.0.0.1:0", "-o", f"pop3_proxy.accounting_file={self.acct}",
             "-o", "pop3_proxy.auth_delay=200ms", "-o",
             "pop3_proxy.backend_timeout=3s", *extra],
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listen: "), line
        self.port = int(line.rsplit(":", 1)[1])
        if any("listen_tls" in a for a in extra):
            line = self.proc.stdout.readline()
            assert line.startswith("listen-tls: "), line
            self.tls_port = int(line.rsplit(":", 1)[1])

    def pop3(self):
        return poplib.POP3("127.0.0.1", self.port, timeout=15)

    def login(self, user="joe", password="jpw"):
        p = self.pop3()
        p.user(user)
        p.pass_(password)
        return p

    def records(self):
        if not self.acct.exists():
            return []
        return [json.loads(line) for line in
                self.acct.read_text().splitlines()]

    def wait_records(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.records()
            if len(r) >= n:
                return r
            time.sleep(0.05)
        raise AssertionError(f"{n} accounting records expected: "
                             f"{self.records()}")

    def stop(self):
        """Stop it; a crash, a sanitizer report or a leak fails the test."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        err = self.err_path.read_text()
        assert self.proc.returncode == 0, err
        assert "Sanitizer" not in err and "runtime error" not in err, err


@pytest.fixture(scope="module")
def dovecots(tmp_path_factory):
    # Fresh backend users for every test (Dovecot's indexes remember
    # what a test did to a mailbox).
    d1 = Dovecot(tmp_path_factory.mktemp("d1"),
                 users={f"a{i}": "s1" for i in range(40)},
                 auth_penalty=False)
    try:
        d2 = Dovecot(tmp_path_factory.mktemp("d2"),
                     users={f"b{i}": "s2" for i in range(40)},
                     auth_penalty=False)
    except BaseException:
        d1.stop()
        raise
    yield d1, d2
    d1.stop()
    d2.stop()


USERS = itertools.count()


@pytest.fixture
def world(mailroom, tmp_path, dovecots):
    """(proxy, registry, d1, d2): joe with a1 (2 messages) and b2 (3)."""
    d1, d2 = dovecots
    n = next(USERS)
    reg = Registry(mailroom, tmp_path)
    reg.a, reg.b = f"a{n}", f"b{n}"
    for i in range(2):
        d1.deliver(reg.a, subject=f"one-{i}", body=f"body one {i}\r\n")
    for i in range(3):
        d2.deliver(reg.b, subject=f"two-{i}", body=f"body two {i}\r\n")
    reg.user("joe", "jpw", apop="apop-secret")
    reg.ids = [reg.account("joe", d1.pop3_port, reg.a, "s1"),
               reg.account("joe", d2.pop3_port, reg.b, "s2")]
    started = []

    def start(extra=()):
        p = Proxy(mailroom, reg, tmp_path, extra)
        started.append(p)
        return p

    reg.start = start
    yield reg, d1, d2
    for p in started:
        p.stop()


def subjects(p, n):
    out = []
    for i in range(1, n + 1):
        lines = p.retr(i)[1]
        out += [ln.decode() for ln in lines if ln.startswith(b"Subject:")]
    return out


# ------------------------------------------------------------------ listing

def test_one_mailbox_over_all_accounts(world):
    reg, d1, d2 = world
    proxy = reg.start()
    p = proxy.login()
    count, size = p.stat()
    assert count == 5
    sizes = [int(x.split()[1]) for x in p.list()[1]]
    assert sum(sizes) == size and len(sizes) == 5
    assert subjects(p, 5) == ["Subject: one-0", "Subject: one-1",
                              "Subject: two-0", "Subject: two-1",
                              "Subject: two-2"]
    uidls = [x.split()[1].decode() for x in p.uidl()[1]]
    assert len(set(uidls)) == 5
    assert all(u.startswith(f"{reg.ids[0]}.") for u in uidls[:2])
    assert all(u.startswith(f"{reg.ids[1]}.") for u in uidls[2:])
    # One message alone: LIST n, UIDL n, TOP.
    assert p.list(3).split()[2] == str(sizes[2]).encode()
    assert p.uidl(4).split()[2].decode() == uidls[3]
    top = p.top(2, 0)[1]
    assert b"Subject: one-1" in top and b"body one 1" not in top
    p.quit()
    # Nothing was deleted; the same session again sees the same numbers.
    p = proxy.login()
    assert [x.split()[1].decode() for x in p.uidl()[1]] == uidls
    p.quit()
    assert d1.message_count(reg.a) == 2 and d2.message_count(reg.b) == 3


def test_dele_is_applied_at_quit_only(world):
    reg, d1, d2 = world
    proxy = reg.start()
    p = proxy.login()
    p.dele(1)
    p.dele(4)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.retr(1)
    assert p.stat()[0] == 3
    # Not yet at the backends.
    assert d1.message_count(reg.a) == 2 and d2.message_count(reg.b) == 3
    p.quit()
    assert d1.message_count(reg.a) == 1 and d2.message_count(reg.b) == 2
    rec = proxy.wait_records(1)[-1]
    assert rec["quit"] and rec["deletions"] == 2 and rec["deleted"] == 2
    p = proxy.login()
    assert subjects(p, 3) == ["Subject: one-1", "Subject: two-0",
                              "Subject: two-2"]
    p.quit()


def test_rset_clears_the_marks(world):
    reg, d1, d2 = world
    proxy = reg.start()
    p = proxy.login()
    p.dele(2)
    p.dele(5)
    p.rset()
    assert p.stat()[0] == 5
    p.noop()
    p.quit()
    assert d1.message_count(reg.a) == 2 and d2.message_count(reg.b) == 3


def test_no_quit_no_deletion(world):
    reg, d1, d2 = world
    proxy = reg.start()
    p = proxy.login()
    p.dele(1)
    p.dele(3)
    p.sock.shutdown(socket.SHUT_RDWR)   # gone without QUIT (RFC 1939 6)
    p.close()
    rec = proxy.wait_records(1)[-1]
    assert rec["logged_in"] and not rec["quit"] and rec["deleted"] == 0
    time.sleep(0.3)
    assert d1.message_count(reg.a) == 2 and d2.message_count(reg.b) == 3


# ------------------------------------------------------------------ logins

def test_wrong_password_and_unknown_user_look_alike_and_are_delayed(world):
    reg, _, _ = world
    proxy = reg.start()
    replies = []
    for user, pw in (("joe", "nope"), ("nobody", "jpw")):
        p = proxy.pop3()
        p.user(user)
        t0 = time.monotonic()
        with pytest.raises(poplib.error_proto) as e:
            p.pass_(pw)
        replies.append((str(e.value), time.monotonic() - t0))
        p.quit()
    assert replies[0][0] == replies[1][0]
    assert "[AUTH]" in replies[0][0]
    # 200 ms, then doubled for the same client address.
    assert replies[0][1] >= 0.2 and replies[1][1] >= 0.4
    # The right password still works.
    proxy.login().quit()


def test_too_many_failures_close_the_connection(world):
    reg, _, _ = world
    proxy = reg.start(["-o", "pop3_proxy.auth_delay=0",
                       "-o", "pop3_proxy.max_auth_failures=2"])
    p = proxy.pop3()
    p.user("joe")
    with pytest.raises(poplib.error_proto):
        p.pass_("x")
    p.user("joe")
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.pass_("y")
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        p.user("joe")
        p.pass_("jpw")


def test_one_session_per_user(world):
    reg, _, _ = world
    proxy = reg.start()
    first = proxy.login()
    second = proxy.pop3()
    second.user("joe")
    with pytest.raises(poplib.error_proto, match="IN-USE"):
        second.pass_("jpw")
    first.quit()
    second.user("joe")
    second.pass_("jpw")
    assert second.stat()[0] == 5
    second.quit()


def test_apop(world):
    reg, _, _ = world
    proxy = reg.start()
    p = proxy.pop3()
    assert p.timestamp.search(p.welcome) is not None
    p.apop("joe", "apop-secret")
    assert p.stat()[0] == 5
    p.quit()
    p = proxy.pop3()
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.apop("joe", "wrong-secret")
    p.quit()


def test_auth_plain(world):
    reg, _, _ = world
    proxy = reg.start()
    p = proxy.pop3()
    resp = p._shortcmd("AUTH PLAIN " + base64.b64encode(
        b"\0joe\0jpw").decode())
    assert resp.startswith(b"+OK")
    assert p.stat()[0] == 5
    p.quit()


def test_malformed_logins(world):
    """Malformed AUTH PLAIN, APOP with a bad digest shape, PASS before
    USER, an unsupported mechanism: each a clear -ERR, and the session
    can still log in."""
    reg, _, _ = world
    proxy = reg.start()
    p = proxy.pop3()
    for line, want in (("AUTH PLAIN !!!!", "malformed"),
                       ("AUTH PLAIN " + base64.b64encode(
                           b"other\0joe\0jpw").decode(), "identity"),
                       ("AUTH CRAM-MD5", "only PLAIN"),
                       ("APOP joe 1234", "APOP"),
                       ("PASS jpw", "USER first")):
        with pytest.raises(poplib.error_proto, match=want):
            p._shortcmd(line)
    p.user("joe")
    p.pass_("jpw")
    assert p.stat()[0] == 5
    p.quit()


def test_capa_and_commands_before_login(world):
    reg, _, _ = world
    proxy = reg.start()
    p = proxy.pop3()
    capa = p.capa()
    assert "UIDL" in capa and "TOP" in capa and "SASL" in capa
    with pytest.raises(poplib.error_proto):
        p.stat()
    with pytest.raises(poplib.error_proto, match="too long"):
        p._shortcmd("USER " + "x" * 300)


def test_pop3s_and_stls(world, tmp_path):
    """The aggregating proxy over POP3S and STLS, with the same limits:
    STLS only once and before USER, and plain text smuggled behind STLS
    is not taken into the TLS session."""
    import ssl
    from peers import make_cert
    reg, _, _ = world
    cert, key = make_cert(tmp_path / "tls", cn="pop.test")
    proxy = reg.start(["-o", f"pop3_proxy.tls_cert={cert}",
                       "-o", f"pop3_proxy.tls_key={key}",
                       "-o", "pop3_proxy.listen_tls=127.0.0.1:0"])
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    c = poplib.POP3_SSL("127.0.0.1", proxy.tls_port, context=ctx,
                        timeout=15)
    c.user("joe")
    c.pass_("jpw")
    assert c.stat()[0] == 5
    c.quit()
    c = proxy.pop3()
    assert "STLS" in c.capa()
    c.stls(context=ctx)
    assert "STLS" not in c.capa()
    with pytest.raises(poplib.error_proto, match="STLS only once"):
        c._shortcmd("STLS")
    c.user("joe")
    c.pass_("jpw")
    assert c.stat()[0] == 5
    c.quit()
    c = proxy.pop3()
    c.user("joe")
    with pytest.raises(poplib.error_proto, match="STLS only once"):
        c._shortcmd("STLS")
    c.quit()
    # STLS with a USER smuggled behind it in plain text: the connection
    # is dropped, the USER never answered.
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.recv(512)
    s.sendall(b"STLS\r\nUSER joe\r\n")
    out = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    assert out.startswith(b"+OK") and out.count(b"+OK") == 1


# ------------------------------------------------------ partial failures

class ScriptedPop3(threading.Thread):
    """A POP3 server on loopback for faults: each login gets the mailbox
    in `boxes` (login -> [(uidl, body)]); `drop_on` is a command prefix
    that makes it close the connection instead of answering."""

    def __init__(self, boxes, drop_on=None, greet=True):
        super().__init__(daemon=True)
        self.boxes = boxes
        self.drop_on = drop_on
        self.greet = greet
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,),
                             daemon=True).start()

    def serve(self, c):
        f = c.makefile("rb")
        if not self.greet:
            f.read()            # silent: never greets
            return
        c.sendall(b"+OK scripted\r\n")
        box = []
        try:
            for raw in f:
                line = raw.decode().strip()
                verb = line.split(" ")[0].upper()
                if self.drop_on and line.upper().startswith(self.drop_on):
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                    return
                if verb == "CAPA":
                    c.sendall(b"+OK\r\nUIDL\r\n.\r\n")
                elif verb == "USER":
                    box = self.boxes.get(line.split(" ", 1)[1])
                    c.sendall(b"+OK\r\n")
                elif verb == "PASS":
                    c.sendall(b"+OK\r\n" if box is not None
                              else b"-ERR [AUTH] no\r\n")
                elif verb == "UIDL":
                    c.sendall(b"+OK\r\n" + b"".join(
                        f"{i + 1} {u}\r\n".encode()
                        for i, (u, _) in enumerate(box)) + b".\r\n")
                elif verb == "LIST":
                    c.sendall(b"+OK\r\n" + b"".join(
                        f"{i + 1} {len(b)}\r\n".encode()
                        for i, (_, b) in enumerate(box)) + b".\r\n")
                elif verb == "RETR":
                    body = box[int(line.split()[1]) - 1][1]
                    c.sendall(b"+OK\r\n" + body + b"\r\n.\r\n")
                elif verb == "QUIT":
                    c.sendall(b"+OK\r\n")
                    c.close()
                    return
                else:
                    c.sendall(b"+OK\r\n")
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def add_user(reg, name, accounts):
    reg.user(name, "pw")
    return [reg.account(name, port, login, secret)
            for port, login, secret in accounts]


def test_backend_down_and_wrong_secret_leave_the_rest(world):
    reg, d1, d2 = world
    closed = free_port()
    silent = ScriptedPop3({}, greet=False)
    try:
        ids = add_user(reg, "kim", [(d1.pop3_port, reg.a, "s1"),
                                    (closed, "x", "y"),
                                    (d2.pop3_port, reg.b, "WRONG"),
                                    (silent.port, "z", "z")])
        proxy = reg.start(["-o", "pop3_proxy.backend_timeout=1s"])
        p = proxy.pop3()
        p.user("kim")
        assert b"from 1 of 4 accounts" in p.pass_("pw")
        assert p.stat()[0] == 2           # a1's messages only
        p.quit()
        rec = proxy.wait_records(1)[-1]
        by_id = {b["account"]: b for b in rec["backends"]}
        assert by_id[ids[0]]["reached"]
        assert not by_id[ids[1]]["reached"]
        assert "refused" in by_id[ids[1]]["error"].lower() or \
            "connect" in by_id[ids[1]]["error"].lower()
        assert "refused the login" in by_id[ids[2]]["error"]
        assert "timeout" in by_id[ids[3]]["error"] or \
            "timed out" in by_id[ids[3]]["error"]
    finally:
        silent.close()


def test_notice_message_names_the_accounts_not_reached(world):
    """pop3_proxy.notice: one message at the end of the listing says which
    accounts were not reached and why; its UIDL stays the same for the
    same accounts that day; deleting it touches no backend."""
    reg, d1, _ = world
    closed = free_port()
    add_user(reg, "ned", [(d1.pop3_port, reg.a, "s1"),
                          (closed, "far", "y")])
    proxy = reg.start(["-o", "pop3_proxy.notice=yes"])
    uidls = []
    for _ in range(2):
        p = proxy.login("ned", "pw")
        count, size = p.stat()
        assert count == 3
        text = b"\r\n".join(p.retr(3)[1]).decode()
        assert "1 of your 2 mail accounts could not be reached" in text
        assert f"far at 127.0.0.1:{closed}" in text
        assert "refused" in text.lower() or "connect" in text.lower()
        assert sum(int(x.split()[1]) for x in p.list()[1]) == size
        top = b"\r\n".join(p.top(3, 0)[1]).decode()
        assert "Subject:" in top and "far at" not in top
        uidls.append(p.uidl(3).split()[2].decode())
        p.dele(3)
        assert p.quit().startswith(b"+OK")
    assert uidls[0] == uidls[1] and uidls[0].startswith("notice.")
    assert d1.message_count(reg.a) == 2
    # Off by default: the same user without it sees the two messages.
    plain = reg.start()
    p = plain.login("ned", "pw")
    assert p.stat()[0] == 2
    p.quit()


def test_unreachable_host_name(world):
    reg, d1, _ = world
    reg.user("lee", "pw")
    # .invalid never resolves (RFC 6761); no query leaves the machine
    # when the name fails locally or at the resolver.
    reg.run("account", "add", "lee", "--host", "no-such-host.invalid",
            "--port", "110", "--login", "x", "--secret", "y")
    reg.account("lee", d1.pop3_port, reg.a, "s1")
    proxy = reg.start(["-o", "pop3_proxy.backend_timeout=2s"])
    p = proxy.login("lee", "pw")
    assert p.stat()[0] == 2
    p.quit()
    rec = proxy.wait_records(1)[-1]
    assert [b["reached"] for b in rec["backends"]] == [False, True]


def test_backend_drops_during_retr(world):
    reg, d1, _ = world
    peer = ScriptedPop3({"m": [("u1", b"Subject: lost\r\n\r\nx")]},
                        drop_on="RETR")
    try:
        add_user(reg, "max", [(peer.port, "m", "s"),
                              (d1.pop3_port, reg.a, "s1")])
        proxy = reg.start()
        p = proxy.login("max", "pw")
        assert p.stat()[0] == 3
        with pytest.raises(poplib.error_proto, match="lost the connection"):
            p.retr(1)
        # The session goes on: the other account's messages still come.
        assert b"Subject: one-0" in b"\n".join(p.retr(2)[1])
        with pytest.raises(poplib.error_proto, match="not reachable"):
            p.retr(1)
        p.dele(1)
        p.dele(2)
        with pytest.raises(poplib.error_proto, match="not removed"):
            p.quit()
        # a1's deletion happened; the dropped account's did not.
        assert d1.message_count(reg.a) == 1
        rec = proxy.wait_records(1)[-1]
        assert rec["deletions"] == 2 and rec["deleted"] == 1
    finally:
        peer.close()


def test_duplicate_uidls_on_two_backends(world):
    reg, _, _ = world
    peer = ScriptedPop3({"p": [("same", b"A"), ("other", b"B")],
                         "q": [("same", b"C")]})
    try:
        add_user(reg, "dup", [(peer.port, "p", "s"), (peer.port, "q", "s")])
        proxy = reg.start()
        p = proxy.login("dup", "pw")
        uidls = [x.split()[1] for x in p.uidl()[1]]
        assert len(uidls) == 3 and len(set(uidls)) == 3
        p.quit()
    finally:
        peer.close()


def test_long_backend_uidl_is_hashed_within_70_octets(world):
    reg, _, _ = world
    long_uidl = "u" * 70
    peer = ScriptedPop3({"p": [(long_uidl, b"A")]})
    try:
        add_user(reg, "lng", [(peer.port, "p", "s")])
        proxy = reg.start()
        p = proxy.login("lng", "pw")
        u = p.uidl(1).split()[2].decode()
        assert len(u) <= 70
        assert u.endswith(hashlib.sha256(long_uidl.encode())
                          .hexdigest()[:32])
        p.quit()
    finally:
        peer.close()


def test_message_deleted_elsewhere_during_the_session(world):
    reg, d1, d2 = world
    proxy = reg.start()
    p = proxy.login()
    assert p.stat()[0] == 5
    # Someone else removes b2's first message over IMAP meanwhile.
    import imaplib
    imap = imaplib.IMAP4("127.0.0.1", d2.imap_port, timeout=10)
    imap.login(reg.b, "s2")
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
    try:
        p.retr(3)               # Dovecot may still serve it, or refuse
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR")
    p.dele(3)
    p.dele(4)
    p.quit()
    # Whatever the backend said of the gone message, the other one went.
    assert d2.message_count(reg.b) == 1
    assert d1.message_count(reg.a) == 2


# ------------------------------------------------------------ other clients

def test_fetchmail_downloads_and_deletes_everything(world, tmp_path):
    reg, d1, d2 = world
    proxy = reg.start()
    out = tmp_path / "fetched"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 protocol pop3 port {proxy.port} '
        f'user "joe" password "jpw" is root here '
        f'sslproto "" mda "/bin/sh -c \'cat > {out}/msg.$$\'"\n')
    os.chmod(rc, 0o600)
    # Its own lock file: as root, fetchmail would share /var/run/fetchmail.pid
    # with any other fetchmail on the machine.
    r = subprocess.run(["fetchmail", "-f", str(rc), "-N", "--nosyslog",
                        "--pidfile", str(tmp_path / "fetchmail.pid"),
                        "--nokeep"], capture_output=True, text=True,
                       timeout=120,
                       env=dict(os.environ, FETCHMAILHOME=str(tmp_path),
                                HOME=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    got = sorted(f.read_text() for f in out.iterdir())
    assert len(got) == 5, r.stdout + r.stderr
    assert all("Subject:" in m for m in got)
    assert d1.message_count(reg.a) == 0 and d2.message_count(reg.b) == 0
    rec = proxy.wait_records(1)[-1]
    assert rec["retrieved"] == 5 and rec["deleted"] == 5


def test_curl_lists_and_fetches(world):
    reg, _, _ = world
    proxy = reg.start()
    url = f"pop3://127.0.0.1:{proxy.port}/"
    listing = subprocess.run(["curl", "-s", "-u", "joe:jpw", url],
                             capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0
    assert len(listing.stdout.split()) == 10
    msg = subprocess.run(["curl", "-s", "-u", "joe:jpw", url + "3"],
                         capture_output=True, text=True, timeout=30)
    assert msg.returncode == 0 and "Subject: two-0" in msg.stdout


def test_metrics(world):
    reg, _, _ = world
    port = free_port()
    proxy = reg.start(["--http-listen", f"127.0.0.1:{port}"])
    proxy.login().quit()
    out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/metrics"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "mailroom_pop3_aggregate_logins 1" in out
    assert "mailroom_pop3_aggregate_backends_reached 2" in out


def test_bad_start_up(mailroom, tmp_path):
    r = subprocess.run([mailroom, "pop3-proxy", "--aggregate", "--store",
                        str(tmp_path / "none.db"), "--key-file",
                        str(tmp_path / "none.key"), "--listen",
                        "127.0.0.1:0"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 78 and "mailroom pop3-proxy:" in r.stderr


def test_more_deletions_than_one_batch(world):
    """More DELEs than the backend connection queues at once (64): they go
    in batches as replies come back, and all count."""
    reg, _, _ = world
    peer = ScriptedPop3({"p": [(f"u{i}", b"x") for i in range(150)]})
    try:
        add_user(reg, "many", [(peer.port, "p", "s")])
        proxy = reg.start()
        p = proxy.login("many", "pw")
        for i in range(1, 151):
            p.dele(i)
        assert p.quit().startswith(b"+OK")
        rec = proxy.wait_records(1)[-1]
        assert rec["deletions"] == 150 and rec["deleted"] == 150
    finally:
        peer.close()
