"""A real Dovecot (2.3) for the `mailroom pop3-proxy` integration tests.

Dovecot   a throwaway Dovecot instance (`dovecot -F -c CONF`, run as root)
          serving POP3, IMAP and LMTP on loopback TCP ports, with users from
          a passwd-file and Maildirs under a private directory, optionally
          with TLS (STLS, and POP3S on its own port).  Stopped by
          PID (the master, then any child still alive); stopping takes
          Dovecot's master a second.  Helpers deliver mail through LMTP,
          turn on new-mail push for a user, change a password, count
          messages, and read the log (logins, failures, client addresses).
PushReceiver  a tiny HTTP server (thread of the test process) that records
          the push notifications Dovecot PUTs (push_url=receiver.url).
dovecot   pytest fixture: a factory dovecot(**kw) -> Dovecot, stopped at
          teardown (import it into the test module to use it).

Facts checked on Dovecot 2.3.19.1 (Debian 12) by test_dovecot_selftest.py:

Greeting and CAPA (pop3-login, before authentication; no STLS since ssl=no,
for TLS see below)::

    +OK [XCLIENT] Dovecot (Debian) ready.     (from a trusted network)
    +OK Dovecot (Debian) ready.               (otherwise)

    CAPA -> +OK / CAPA / TOP / UIDL / RESP-CODES / PIPELINING /
            AUTH-RESP-CODE / USER / SASL PLAIN LOGIN / .

  XCLIENT is NOT listed in CAPA: the only sign that Dovecot will honour it
  is the "[XCLIENT]" response code in the greeting.  After login the pop3
  process answers CAPA with CAPA, TOP, UIDL, RESP-CODES, PIPELINING and
  AUTH-RESP-CODE (no USER, no SASL).

XCLIENT (pop3-login, before USER/PASS or AUTH; client from a network in
login_trusted_networks)::

    XCLIENT ADDR=127.0.0.9 PORT=4242          -> +OK Updated
    XCLIENT ADDR=not-an-ip                    -> -ERR Invalid parameters
    XCLIENT ... from an untrusted address     -> +OK You are not from
                                                 trusted IP - ignoring
    XCLIENT PORT=0 (or 70000)                 -> -ERR Invalid parameters
    XCLIENT after login                       -> -ERR Unknown command: XCLIENT

  One line: the word XCLIENT, then space-separated NAME=VALUE pairs, all
  case-insensitive; ADDR (IPv4, or IPv6 with or without brackets), PORT
  (1-65535), SESSION (session id, logged as session=<...>), TTL (proxy hop
  count) and FORWARD (base64 forward fields) are understood; unknown names
  are ignored (still +OK Updated; so is a bare XCLIENT).  It may be sent
  more than once (the last value wins) and pipelined with USER and PASS
  in one write.  The address then appears as rip= (PORT as rport=) in the
  Login log line and is the address Dovecot's auth penalty counts.  An
  untrusted XCLIENT also gets +OK: look for "[XCLIENT]" in the greeting,
  not at the reply, to know whether it takes effect.  (Before login, the
  third unknown command in a row, NOOP included, gets "-ERR Unknown
  command." then "-ERR Too many invalid bad commands." and a disconnect;
  XCLIENT errors do not count.)

TLS (tls=(cert, key); without it ssl = no and no pop3s listener)::

    ssl = yes
    ssl_cert = <DIR/tls.crt              (copies of the given files)
    ssl_key = <DIR/tls.key
    disable_plaintext_auth = no          (USER/PASS also without TLS)
    service pop3-login {
      inet_listener pop3 { address = 127.0.0.1  port = POP3_PORT }
      inet_listener pop3s { address = 127.0.0.1  port = POP3S_PORT
                            ssl = yes }
    }

  On the plain port CAPA then also lists STLS (after USER, before
  SASL); STLS -> "+OK Begin TLS negotiation now.", and CAPA over TLS is
  the list without STLS (no new greeting, as POP3 has none).  POP3S
  (implicit TLS on pop3s_port) greets like the plain port, its CAPA
  without STLS.  Over TLS the Login line says "TLS" where it said
  "secured" (loopback, plaintext).  XCLIENT from a trusted network works
  over TLS as without it: the greeting still carries [XCLIENT] on both
  ports; XCLIENT after STLS, or on the pop3s port, -> "+OK Updated" and
  sets rip/rport; XCLIENT sent before STLS also survives it.  TLS 1.3,
  no DH parameters needed (no warning in the log); a make_cert()
  certificate is its own CA (ssl_context() trusts it).

Authentication: USER/PASS, AUTH PLAIN with an initial response
(`AUTH PLAIN base64("\\0user\\0pass")`, RFC 5034) or without one ("+ "
continuation, then the base64 line), AUTH LOGIN.  Success is
"+OK Logged in."; failure "-ERR [AUTH] Authentication failed." (also for
an unknown user).

Failure delay and penalty (2.3.19): a failed authentication is answered on
the auth process's next 500 ms tick once auth_failure_delay has passed, so
even with auth_failure_delay=0 it takes up to 0.5 s (2-2.5 s with the
default of 2 s).  Each failure also raises a penalty for the client address
(rip, i.e. the XCLIENT address when given): the next authentication from
that address (failing or not) waits 4 s (checked; then 8 s and 15 s per
Dovecot's source), until a success resets it; other addresses are not
slowed down.
auth_penalty=False turns the penalty off for an instance (below).

Push (push_url=...): the push_notification plugin's OX driver, loaded for
LMTP only, so it fires only for mail delivered with deliver() (not for
files written into the Maildir), only for new mail in INBOX, and only for
users with the server METADATA key /private/vendor/vendor.dovecot/
http-notify (enable_push()).  The key must be set on the server ("" as the
mailbox name), not on INBOX: Dovecot ignores it on INBOX.  The request::

    PUT <path of push_url> HTTP/1.1
    Host: 127.0.0.1:<port>
    Date: <RFC 1123 date>
    Content-Length: <n>
    Connection: Keep-Alive
    Content-Type: application/json; charset=utf-8

    {"user":"alice","event":"messageNew","folder":"INBOX",
     "imap-uidvalidity":1795397224,"imap-uid":1,
     "from":"Bob <bob@example.test>","subject":"Hello","snippet":"Body",
     "unseen":1}

  (one line, no spaces; no Authorization header, the URL having no
  user:password@).  Any 2xx answer is success (per Dovecot's source, it
  waits 2 s for the answer and retries once; not checked here).

Log lines the helpers parse (log_path; login_log_format_elements adds
rport= to Dovecot's default format)::

    pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=127.0.0.9,
        rport=4242, lip=127.0.0.1, mpid=123, secured, session=<...>
    auth: Info: passwd-file(alice,127.0.0.1,<...>): Password mismatch
    auth: Info: passwd-file(bob,127.0.0.1,<...>): unknown user

  Lines reach the file through Dovecot's log process, a moment after the
  client got its answer: poll with peers.wait_until().

Passwords: the passwd-file passdb is re-read when its mtime or size
changes, but stat()ed at most once per second; there is no auth cache
(auth_cache_size = 0).  set_password() therefore gives the file a new
mtime and returns only once the second has turned, so the very next login
sees the new password.
"""
import base64
import dataclasses
import email.utils
import http.server
import imaplib
import json
import os
import pathlib
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import free_port, server_factory
from peers import wait_until
from procstat import cmdline, descendants

DOVECOT = "/usr/sbin/dovecot"

MAIL_UID = 65534
"""uid and gid of every mail user (nobody/nogroup): Maildirs belong to it."""

PUSH_KEY = "/private/vendor/vendor.dovecot/http-notify"
"""The METADATA entry (on the server, mailbox "") that enables OX push."""

LOGIN_RE = re.compile(r" (?P<service>[a-z0-9]+)-login: Info: Login: "
                      r"user=<(?P<user>[^>]*)>, .*?rip=(?P<rip>[^,]+), "
                      r"rport=(?P<rport>\d+),")
AUTH_FAIL_RE = re.compile(r" auth: Info: passwd-file\((?P<user>[^,]*),"
                          r"[^)]*\): (?:Password mismatch|unknown user)")


class Dovecot:
    """A Dovecot serving POP3, IMAP and LMTP on loopback TCP ports.

    tmp_path: the test's directory; the instance itself lives in a fresh
      0755 directory under the system temp directory (.dir), because
      Dovecot's unprivileged processes (user dovecot, the mail uid 65534)
      must reach it and pytest's tmp_path is 0700 (and its Unix socket
      paths could grow too long).  stop() removes .dir and keeps a copy of
      the log in tmp_path (.log_path then points to it).
    users: {name: password}; every user gets a home with a Maildir.
    push_url: URL that gets the push notifications (PushReceiver.url);
      None loads no push plugin.
    auth_failure_delay: Dovecot's auth_failure_delay ("0", "2 secs", or
      whole seconds as a number); None keeps Dovecot's default (2 s).
      Failures still wait for the next 500 ms tick (module docstring).
    trusted_networks: login_trusted_networks (lets XCLIENT set the client
      address); None or "" trusts no one.
    tuned: long-lived pop3-login and pop3 processes, some started in
      advance (service_count, process_min_avail), and mail_fsync = never:
      a USER/PASS login takes about 1 ms, QUIT 2 ms.
    auth_penalty: False turns off the per-address penalty after failed
      logins (by renaming anvil's penalty socket, so that the auth process
      finds none and disables it).
    max_userip_connections: mail_max_userip_connections for POP3 (Dovecot
      allows 10 sessions per user and client address); None keeps it.
    tls: None (ssl = no), or (cert_path, key_path) of PEM files, e.g. from
      peers.make_cert(): then ssl = yes with copies of them in .dir,
      STLS on pop3_port (plaintext auth still allowed without it) and
      implicit TLS (POP3S) on .pop3s_port.  See "TLS" in the module
      docstring.
    start: start at once (else call start()).

    Attributes: host, pop3_port, pop3s_port (None without tls), imap_port,
    lmtp_port, log_path, dir,
    users (current passwords), proc (the master process, None when
    stopped).  stop(cleanup=False) then start() brings the same instance
    back on the same ports (a backend that goes away and returns).
    """

    def __init__(self, tmp_path, users=None, push_url=None,
                 auth_failure_delay="0", trusted_networks="127.0.0.0/8",
                 tuned=True, auth_penalty=True, max_userip_connections=None,
                 tls=None, start=True):
        if os.geteuid() != 0 or not os.access(DOVECOT, os.X_OK):
            raise RuntimeError(f"the Dovecot fixture runs {DOVECOT} as root")
        self.tmp_path = pathlib.Path(tmp_path)
        self.users = dict(users if users is not None else {"alice": "pw1"})
        self.push_url = push_url
        self.auth_failure_delay = auth_failure_delay
        self.trusted_networks = trusted_networks
        self.tuned = tuned
        self.auth_penalty = auth_penalty
        self.max_userip_connections = max_userip_connections
        self.host = "127.0.0.1"
        self.proc = None
        self._children = None
        self.pop3_port = self.imap_port = self.lmtp_port = None
        self.pop3s_port = None
        self._passwd_mtime = 0
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
        os.chmod(self.dir, 0o755)
        self.log_path = self.dir / "dovecot.log"
        self.passwd_path = self.dir / "passwd"
        (self.dir / "home").mkdir(mode=0o755)
        self.tls = None
        if tls is not None:
            # Copies, read by Dovecot's config process (root) at start: the
            # originals may sit in a 0700 tmp_path, or go away.
            cert, key = tls
            self.tls = (self.dir / "tls.crt", self.dir / "tls.key")
            try:
                shutil.copyfile(cert, self.tls[0])
                shutil.copyfile(key, self.tls[1])
            except BaseException:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            os.chmod(self.tls[0], 0o644)
            os.chmod(self.tls[1], 0o600)
        self._write_passwd()
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout=10.0):
        """Start Dovecot and wait until POP3 greets.  The first start picks
        free ports (others when one turned out to be taken); a start after
        stop(cleanup=False) uses the same ports again, mail and all."""
        restart = self.pop3_port is not None
        for attempt in range(1 if restart else 5):
            if not restart:
                self.pop3_port = free_port(self.host)
                self.imap_port = free_port(self.host)
                self.lmtp_port = free_port(self.host)
                ports = [self.pop3_port, self.imap_port, self.lmtp_port]
                if self.tls:
                    self.pop3s_port = free_port(self.host)
                    ports.append(self.pop3s_port)
                if len(set(ports)) < len(ports):
                    continue
            self.instance = f"mailroom-{self.pop3_port}"
            # A stale pid file would stop the master if its PID was reused.
            (self.dir / "run" / "master.pid").unlink(missing_ok=True)
            conf = self.dir / "dovecot.conf"
            conf.write_text(self._config())
            self._out = open(self.dir / "dovecot.out", "ab")
            self.proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                stdout=self._out, stderr=subprocess.STDOUT)
            if self._wait_ready(timeout):
                return self
            self._stop_processes()
            if "Address already in use" not in self._diagnostics():
                break
        raise RuntimeError("dovecot did not start:\n" + self._diagnostics())

    def _wait_ready(self, timeout):
        """True once the POP3 port answers with a greeting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.pop3_port),
                                              timeout=2) as s, \
                        s.makefile("rb") as f:
                    if f.readline().startswith(b"+OK"):
                        s.sendall(b"QUIT\r\n")
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _diagnostics(self):
        parts = []
        for path in (self.dir / "dovecot.out", self.log_path):
            if path.exists():
                text = path.read_text(errors="replace")
                parts.append(f"--- {path}\n{text}")
        return "\n".join(parts)

    def stop(self, cleanup=True):
        """Stop Dovecot by PID (it takes Dovecot a second).  Then, unless
        cleanup is False (to start() it again later), keep a copy of its
        log in tmp_path and remove .dir.  Safe to call twice."""
        self._stop_processes()
        if cleanup and self.dir.exists():
            if self.log_path.exists() and self.log_path.parent == self.dir:
                saved = self.tmp_path / f"dovecot-{self.pop3_port}.log"
                shutil.copyfile(self.log_path, saved)
                self.log_path = saved
            shutil.rmtree(self.dir, ignore_errors=True)

    def terminate(self):
        """Ask Dovecot to stop without waiting (stop() then waits): lets
        several instances take their second to stop at the same time."""
        if self.proc is not None and self._children is None:
            self._children = descendants(self.proc.pid)
            if self.proc.poll() is None:
                self.proc.terminate()

    def _stop_processes(self):
        """SIGTERM the master and wait; its children exit with it, and any
        that does not is killed by PID (checked to still be ours)."""
        if self.proc is None:
            return
        self.terminate()
        children, self._children = self._children, None
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        title = f"dovecot-{self.instance}/"
        deadline = time.monotonic() + 5
        for pid in children:
            while cmdline(pid).startswith(title):
                if time.monotonic() >= deadline:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    break
                time.sleep(0.05)
        self._out.close()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --------------------------------------------------------- configuration

    def _config(self):
        d = self.dir
        lines = [
            "# Written by tests/integration/dovecot.py",
            f"instance_name = {self.instance}",
            f"base_dir = {d}/run",
            f"state_dir = {d}/state",
            f"log_path = {d}/dovecot.log",
            "protocols = pop3 imap lmtp",
            "listen = 127.0.0.1",
            *(["ssl = yes", f"ssl_cert = <{self.tls[0]}",
                f"ssl_key = <{self.tls[1]}"] if self.tls else ["ssl = no"]),
            # Plaintext USER/PASS also without STLS (and, with tls, from
            # networks other than loopback).
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            # No auth cache: a changed passwd-file counts at once.
            "auth_cache_size = 0",
            # Log every failed authentication (failed_logins()).
            "auth_verbose = yes",
            # Dovecot's default Login line, plus the client's port.
            "login_log_format_elements = user=<%u> method=%m rip=%r "
            "rport=%{rport} lip=%l mpid=%e %c session=<%{session}>",
            "mail_location = maildir:~/Maildir",
            "imap_metadata = yes",
            "mail_attribute_dict = file:%h/dovecot-attributes",
            f"passdb {{\n  driver = passwd-file\n"
            f"  args = {self.passwd_path}\n}}",
            f"userdb {{\n  driver = passwd-file\n"
            f"  args = {self.passwd_path}\n}}",
        ]
        if self.auth_failure_delay is not None:
            delay = self.auth_failure_delay
            if not isinstance(delay, str):
                delay = f"{int(delay)} secs"
            lines.append(f"auth_failure_delay = {delay}")
        if self.trusted_networks:
            lines.append(f"login_trusted_networks = {self.trusted_networks}")
        if self.max_userip_connections is not None:
            lines.append("protocol pop3 {\n  mail_max_userip_connections = "
                         f"{self.max_userip_connections}\n}}")
        tuning_login = tuning_pop3 = ""
        if self.tuned:
            # One long-lived login process for all clients, and pop3
            # processes that serve many sessions, two of them forked ahead;
            # no fsync() of throwaway mail.
            tuning_login = "  service_count = 0\n  process_min_avail = 1\n"
            tuning_pop3 = "  service_count = 1000\n  process_min_avail = 2\n"
            lines.append("mail_fsync = never")
        lines += [
            "service pop3-login {",
            f"  inet_listener pop3 {{\n    address = {self.host}\n"
            f"    port = {self.pop3_port}\n  }}",
            (f"  inet_listener pop3s {{\n    address = {self.host}\n"
             f"    port = {self.pop3s_port}\n    ssl = yes\n  }}"
             if self.tls else "  inet_listener pop3s {\n    port = 0\n  }"),
            tuning_login + "}",
            "service pop3 {\n" + tuning_pop3 + "}",
            "service imap-login {",
            f"  inet_listener imap {{\n    address = {self.host}\n"
            f"    port = {self.imap_port}\n  }}",
            "  inet_listener imaps {\n    port = 0\n  }",
            "}",
            "service lmtp {",
            f"  inet_listener lmtp {{\n    address = {self.host}\n"
            f"    port = {self.lmtp_port}\n  }}",
            "}",
            # Enough for the process limits above (silences a warning).
            "service auth {\n  client_limit = 4096\n}",
        ]
        if not self.auth_penalty:
            # The auth process looks for base_dir/anvil-auth-penalty and
            # silently disables the penalty when it does not exist.
            lines.append("service anvil {\n  unix_listener anvil-auth-penalty"
                         " {\n    path = anvil-auth-penalty-disabled\n  }\n}")
        if self.push_url:
            lines += [
                "protocol lmtp {\n  mail_plugins = $mail_plugins notify "
                "push_notification\n}",
                "plugin {\n  push_notification_driver = "
                f"ox:url={self.push_url}\n}}",
            ]
        return "\n".join(lines) + "\n"

    def home(self, user):
        """The user's home directory (its Maildir is home/Maildir)."""
        return self.dir / "home" / user

    def _write_passwd(self):
        """Write the passwd-file (atomically) and make the users' homes.

        Passwords are stored base64-encoded ({PLAIN.B64}) so that any
        character is allowed.  The file gets an mtime it never had before:
        Dovecot re-reads it only when mtime (seconds) or size changes.
        """
        entries = []
        for user, password in self.users.items():
            if not re.fullmatch(r"[A-Za-z0-9._@+-]+", user):
                raise ValueError(f"unsupported user name {user!r}")
            home = self.home(user)
            if not home.exists():
                home.mkdir(mode=0o700)
                os.chown(home, MAIL_UID, MAIL_UID)
            b64 = base64.b64encode(password.encode()).decode()
            entries.append(f"{user}:{{PLAIN.B64}}{b64}:{MAIL_UID}:{MAIL_UID}"
                           f"::{home}::\n")
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text("".join(entries))
        os.chmod(tmp, 0o644)
        mtime = max(int(time.time()), self._passwd_mtime + 1)
        os.utime(tmp, (mtime, mtime))
        self._passwd_mtime = mtime
        os.replace(tmp, self.passwd_path)

    def set_password(self, user, password):
        """Give user (new or not) a new password, effective for the next
        login.  Takes up to a second: Dovecot stat()s the passwd-file at
        most once per second, so this waits for the clock's next second."""
        self.users[user] = password
        self._write_passwd()
        time.sleep(1.02 - time.time() % 1)

    # ------------------------------------------------------------- actions

    def pop3(self, timeout=10):
        """A poplib.POP3 connected to Dovecot (not logged in)."""
        return poplib.POP3(self.host, self.pop3_port, timeout=timeout)

    def ssl_context(self):
        """A client SSLContext trusting this instance's certificate (a
        make_cert() one is its own CA); host names are not checked."""
        ctx = ssl.create_default_context(cafile=str(self.tls[0]))
        ctx.check_hostname = False
        return ctx

    def pop3_ssl(self, timeout=10, context=None):
        """A poplib.POP3_SSL connected to .pop3s_port (not logged in);
        context defaults to ssl_context()."""
        return poplib.POP3_SSL(self.host, self.pop3s_port, timeout=timeout,
                               context=context or self.ssl_context())

    def deliver(self, user, subject="Test message", body="Hello.\r\n",
                sender="sender@example.test", message=None):
        """Deliver one message to user through LMTP (so push fires).

        message: the whole message (bytes or str) instead of one built
        from subject/body/sender.  Returns the Message-ID built (None with
        message=).  A str gets CRLF line ends; bytes go as they are.
        """
        msgid = None
        if message is None:
            msgid = email.utils.make_msgid(domain="mailroom.test")
            message = (f"From: {sender}\r\nTo: {user}@mailroom.test\r\n"
                       f"Subject: {subject}\r\n"
                       f"Date: {email.utils.formatdate()}\r\n"
                       f"Message-ID: {msgid}\r\n\r\n{body}")
        if isinstance(message, str):
            message = re.sub(r"\r?\n", "\r\n", message).encode()
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=10) as lmtp:
            refused = lmtp.sendmail(sender, [user], message)
        if refused:
            raise RuntimeError(f"LMTP refused {user}: {refused}")
        return msgid

    def enable_push(self, user):
        """Set the METADATA entry that makes the OX driver push for user
        (over IMAP, with the user's own password)."""
        imap = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            imap.login(user, self.users[user])
            typ, data = imap.xatom("SETMETADATA", '""',
                                   f'({PUSH_KEY} "user={user}")')
            if typ != "OK":
                raise RuntimeError(f"SETMETADATA failed: {typ} {data}")
        finally:
            imap.logout()

    # ------------------------------------------------------------- reading

    def log_text(self):
        """Dovecot's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _logins(self, service="pop3", user=None):
        return [m for m in LOGIN_RE.finditer(self.log_text())
                if m["service"] == service and user in (None, m["user"])]

    def logins(self, service="pop3", user=None):
        """Successful logins through service ("pop3" or "imap") so far."""
        return len(self._logins(service, user))

    def pop3_logins(self, user=None):
        """Successful POP3 logins so far (all users, or user's)."""
        return self.logins("pop3", user)

    def client_addresses(self, user=None):
        """rip= of each successful POP3 login, in log order: the client's
        address as Dovecot saw it (the XCLIENT ADDR when given)."""
        return [m["rip"] for m in self._logins("pop3", user)]

    def client_endpoints(self, user=None):
        """(rip, rport) of each successful POP3 login, in log order."""
        return [(m["rip"], int(m["rport"]))
                for m in self._logins("pop3", user)]

    def failed_logins(self, user=None):
        """Failed authentications (wrong password or unknown user) so far,
        through any protocol."""
        return sum(1 for m in AUTH_FAIL_RE.finditer(self.log_text())
                   if user in (None, m["user"]))

    def message_count(self, user):
        """Messages in user's Maildir INBOX (new + cur)."""
        maildir = self.home(user) / "Maildir"
        return sum(len(os.listdir(maildir / sub))
                   for sub in ("new", "cur") if (maildir / sub).is_dir())


# ------------------------------------------------------------ push receiver

@dataclasses.dataclass
class PushRequest:
    """One HTTP request as PushReceiver got it."""
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class PushReceiver:
    """An HTTP server on a loopback port that records every request.

    Answers `status` (204 by default) with an empty body, HTTP/1.1 with
    keep-alive as Dovecot's client expects.  .url is what to give Dovecot
    as push_url; .requests the PushRequests so far; wait(n) waits for n.
    """

    def __init__(self, host="127.0.0.1", path="/push", status=204):
        self.requests = []
        self.status = status
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                receiver.requests.append(PushRequest(
                    self.command, self.path, dict(self.headers.items()),
                    body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _record

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def wait(self, n=1, timeout=5.0):
        """The requests once there are at least n (or timeout passed)."""
        wait_until(lambda: len(self.requests) >= n, timeout)
        return list(self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------- fixture

@pytest.fixture
def dovecot(tmp_path):
    """Factory: dovecot(users={...}, push_url=..., ...) -> Dovecot, started;
    every one is stopped at teardown.  See Dovecot."""
    yield from server_factory(Dovecot, tmp_path)
