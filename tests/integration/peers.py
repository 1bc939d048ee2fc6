"""SMTP peers and helpers for the `mailroom send` integration tests.

Peers (every one listens on a loopback address, 127.0.0.x, and is stopped at
teardown by the fixture that started it):

  SmtpSink   Postfix's /usr/sbin/smtp-sink in a child process (stopped by
             PID), optionally dumping every transaction to one file each so
             that a test can read what arrived (see SmtpSink.messages()).
  AioPeer    an aiosmtpd server in a thread of the test process.  It keeps
             every accepted message in memory and misbehaves on request:
             421 at the greeting, 451/550 for chosen recipients at RCPT or
             after the final dot, connection dropped in the middle of DATA,
             slow reply to the final dot, PIPELINING advertised or not,
             STARTTLS with a certificate made by make_cert().
  ScriptedPeer a raw asyncio SMTP server for what aiosmtpd will not do:
             any reply to any command (a 250 to DATA, a 421 in the middle
             of a pipelined group, bytes that are not UTF-8), a limit on
             concurrent connections (421 beyond it), an announced SIZE, a
             STARTTLS that answers 220 and then never shakes hands.
  RcptScriptedPeer a ScriptedPeer that also answers RCPT per address
             (e.g. 451 for ever for chosen recipients).
  CountingSink a fast raw asyncio sink that only counts messages per
             recipient, for campaigns of hundreds of thousands.

Helpers: make_cert() (openssl CLI), common_free_port(), write_list(),
run_send() and SendResult (run `mailroom send`, parse its summary,
accounting and reject files), assert_accounting_sane(); for crash tests
MailroomRun (mailroom in the background, signalled or killed by PID),
inflight_at_crash(), read_accounting_partial(), journal_segments(),
journal_written_records().

A message as received is a Received (envelope, raw bytes, peer, TLS flag).
"""
import asyncio
import csv
import dataclasses
import email
import email.policy
import io
import json
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from aiosmtpd.smtp import SMTP

from conftest import free_port, wait_port

ALWAYS = math.inf
"""Budget meaning "misbehave on every occasion" (e.g. greet_421=ALWAYS)."""

ACCOUNTING_FIELDS = ["time", "type", "recipient", "line", "domain", "mx",
                     "host", "attempt", "code", "dsn", "reply", "message_id",
                     "forensics"]
RECORD_TYPES = {"delivered", "deferred", "bounced", "rejected", "backoff"}
FINAL_TYPES = {"delivered", "bounced"}

# Quick retries: a temporary failure is retried within a second and a
# recipient gives up after three attempts, so a test that goes through the
# whole retry schedule ends in a few seconds.  A host marked down after a
# failure is up again (100 ms, the minimum) before the first retry (200 ms).
QUICK_OPTS = {
    "queue.retry_base": "200ms",
    "queue.retry_max_interval": "1s",
    "queue.max_attempts": "3",
    "queue.host_down_time": "100ms",
    "smtp.connect_timeout": "2s",
    "smtp.greeting_timeout": "5s",
    "dns.timeout": "1s",
    "dns.tries": "2",
}


SENDER = "news@sender.test"
TEMPLATE = ("From: Campaign <news@sender.test>\n"
            "To: {{name}} <{{email}}>\n"
            "Subject: Hello {{name}}\n"
            "\n"
            "Hi {{name}}, this message is for {{email}}.\n")
"""A personalized template: every recipient's message differs, so each
goes in its own transaction (one RCPT TO per message)."""


def recipients(n, domain="x.test", prefix="r"):
    """n list rows [email, name] for header ("email", "name")."""
    return [[f"{prefix}{i}@{domain}", f"Name {prefix}{i}"] for i in range(n)]


# ---------------------------------------------------------------- utilities

def port_is_free(host, port):
    """True when a TCP socket can bind host:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def common_free_port(hosts, tries=50):
    """A TCP port free on every address in hosts (for -o smtp.port=PORT,
    which applies to every MX host found through DNS)."""
    hosts = list(hosts)
    for _ in range(tries):
        port = free_port(hosts[0])
        if all(port_is_free(h, port) for h in hosts[1:]):
            return port
    raise RuntimeError(f"no common free port on {hosts}")


def make_cert(directory, cn="mx.test", dns_names=(), ips=()):
    """Self-signed certificate made with the openssl CLI.

    Returns (certfile, keyfile) as paths in directory.  dns_names and ips
    go into subjectAltName (cn is added to the DNS names).  The certificate
    is its own CA, so a client can trust it with it as its CA file.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{cn}.crt"
    key = directory / f"{cn}.key"
    san = ",".join([f"DNS:{n}" for n in (cn, *dns_names)] +
                   [f"IP:{a}" for a in ips])
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName={san}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30)
    return cert, key


def wait_until(predicate, timeout=5.0, interval=0.05):
    """Poll predicate() until it is true or timeout passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ------------------------------------------------------------ a received mail

@dataclasses.dataclass
class Received:
    """One message as a peer took it.

    data is the message after dot-unstuffing.  From an AioPeer it is byte
    exact (CRLF line ends as sent); from an SmtpSink dump every line ends in
    LF (smtp-sink rewrites line ends), so check CRLF on AioPeer messages.
    """
    mail_from: str
    rcpt_tos: list
    data: bytes
    host: str                   # "ip:port" of the peer that took it
    tls: object = None          # True/False (AioPeer); None (smtp-sink)
    mail_options: list = dataclasses.field(default_factory=list)
    connection: int = 0         # AioPeer connection number (1-based)

    def message(self):
        """The message parsed with email.policy.default."""
        return email.message_from_bytes(self.data, policy=email.policy.default)

    def raw_header(self, name):
        """The raw (still folded, still encoded) value of the first header
        called name, as bytes without the name, or None."""
        head = self.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        lines = re.split(rb"\r?\n", head)
        want = name.lower().encode() + b":"
        for i, line in enumerate(lines):
            if line.lower().startswith(want):
                value = [line[len(want):]]
                for cont in lines[i + 1:]:
                    if cont[:1] in (b" ", b"\t"):
                        value.append(cont)
                    else:
                        break
                return b"\r\n".join(value)
        return None

    def headers(self):
        """{lower-case name: [unfolded raw value, ...]} (str, still
        RFC 2047 encoded).  Much faster than message() for bulk checks."""
        head = self.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        text = head.decode("utf-8", "surrogateescape")
        text = re.sub(r"\r?\n(?=[ \t])", "", text)
        out = {}
        for line in re.split(r"\r?\n", text):
            name, _, value = line.partition(":")
            out.setdefault(name.strip().lower(), []).append(value.strip())
        return out

    def body(self):
        """Bytes after the first empty line."""
        for sep in (b"\r\n\r\n", b"\n\n"):
            if sep in self.data:
                return self.data.split(sep, 1)[1]
        return b""


# ------------------------------------------------------------------ smtp-sink

class SmtpSink:
    """Postfix's smtp-sink on host:port, in a child process.

    dump=True makes it write each transaction to its own file (-d) in a
    directory that the unprivileged user can write; messages() parses them.
    args are extra smtp-sink options (e.g. ["-p"] no PIPELINING,
    ["-Q", "CONNECT"] 421 at connect, ["-r", "RCPT"] 4xx for every RCPT;
    see man smtp-sink).  As root, smtp-sink runs with -u nobody.
    """

    def __init__(self, tmp_path, host="127.0.0.2", port=None, dump=True,
                 args=(), backlog=256):
        self.host = host
        self.port = port or free_port(host)
        self.address = f"{host}:{self.port}"
        self.dump_dir = None
        cmd = ["/usr/sbin/smtp-sink"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        if dump:
            # tmp_path is 0700 root: nobody could not reach a directory in
            # it, so the dump lives in its own world-writable directory,
            # removed by stop().
            self.dump_dir = pathlib.Path(tempfile.mkdtemp(
                prefix=f"smtp-sink-{host}-{self.port}-"))
            os.chmod(self.dump_dir, 0o1777)
            # One subdirectory per second keeps the 32-bit random suffixes
            # of thousands of files from colliding.
            cmd += ["-d", f"{self.dump_dir}/%H%M%S/m."]
        cmd += list(args)
        cmd += [f"inet:{self.address}", str(backlog)]
        self.log = open(pathlib.Path(tmp_path) /
                        f"smtp-sink-{host}-{self.port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(host, self.port)
        except TimeoutError:
            self.stop()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def dump_files(self):
        if self.dump_dir is None:
            return []
        return sorted(p for p in self.dump_dir.rglob("m.*") if p.is_file())

    def messages(self, expect=None, timeout=5.0):
        """Parse every dump file into Received objects.

        expect: wait (up to timeout) until at least this many files exist,
        as the last dump may still be closing when the client exits.
        """
        if self.dump_dir is None:
            raise RuntimeError("smtp-sink was started without dump=True")
        if expect is not None:
            wait_until(lambda: len(self.dump_files()) >= expect, timeout)
        out = []
        for path in self.dump_files():
            out.append(self._parse_dump(path.read_bytes()))
        return out

    def _parse_dump(self, raw):
        lines = raw.split(b"\n")
        mail_from, rcpts, options = None, [], []
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith(b"X-Mail-Args: "):
                args = line[len(b"X-Mail-Args: "):].decode("utf-8", "replace")
                addr, _, rest = args.partition(" ")
                mail_from = addr.strip("<>")
                options = rest.split()
            elif line.startswith(b"X-Rcpt-Args: "):
                args = line[len(b"X-Rcpt-Args: "):].decode("utf-8", "replace")
                rcpts.append(args.split(" ")[0].strip("<>"))
            elif line.startswith(b"Received: "):
                i += 1
                while i < len(lines) and lines[i][:1] in (b"\t", b" "):
                    i += 1
                break
            i += 1
        body = b"\n".join(lines[i:])
        # The dump ends with the message, then one empty line.
        if body.endswith(b"\n\n"):
            body = body[:-1]
        return Received(mail_from=mail_from, rcpt_tos=rcpts, data=body,
                        host=self.address, tls=None, mail_options=options)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()

    def cleanup(self):
        if self.dump_dir is not None:
            shutil.rmtree(self.dump_dir, ignore_errors=True)


# -------------------------------------------------------------------- AioPeer

class _PeekReader(asyncio.StreamReader):
    """StreamReader that notices commands sent before the previous reply.

    aiosmtpd reads each command with readuntil() (separator LF) and replies
    before reading the next one.  If bytes are already buffered after a
    command line, the client sent them without waiting for the reply: it
    pipelined.  DATA lines are read with separator CRLF and not counted.
    """
    _peer_smtp = None

    async def readuntil(self, separator=b"\n"):
        line = await super().readuntil(separator)
        if separator == b"\n" and self._buffer and self._peer_smtp:
            self._peer_smtp.peer._bump("pipelined")
        return line


class _PeerSMTP(SMTP):
    """aiosmtpd's SMTP with the hooks the misbehaviours need."""

    def __init__(self, peer, *args, **kw):
        super().__init__(*args, **kw)
        self.peer = peer
        self.conn_no = 0
        reader = self._stream_reader
        reader.__class__ = _PeekReader
        reader._peer_smtp = self

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.conn_no = self.peer._connection_opened(self)

    def connection_lost(self, error):
        self.peer._connection_closed(self)
        super().connection_lost(error)

    async def _handle_client(self):
        if self.peer._take("greet_421"):
            self.peer._bump("greetings_refused")
            await self.push(self.peer.greet_reply)
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_MAIL(self, arg):
        self.peer._bump("mail_cmds")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        self.peer._bump("rcpt_cmds")
        await super().smtp_RCPT(arg)

    async def smtp_STARTTLS(self, arg):
        self.peer._bump("starttls")
        await super().smtp_STARTTLS(arg)

    async def smtp_DATA(self, arg):
        if (not arg and self.session.host_name and self.envelope.rcpt_tos
                and self.peer._take("drop_in_data")):
            # Accept DATA, take the start of the body, then hang up
            # without a reply: the connection dies in the middle of DATA.
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                await asyncio.wait_for(self._reader.readuntil(b"\r\n"), 5)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError):
                pass
            self.peer._bump("drops")
            if self.peer.drop_mode == "reset":
                self.transport.abort()
            else:
                self.transport.close()
            # Read nothing more: connection_lost() cancels this task soon.
            # (Returning would let aiosmtpd read the rest of the body as
            # commands until then.)
            await asyncio.sleep(30)
            return
        await super().smtp_DATA(arg)


class _PeerHandler:
    """aiosmtpd handler: the AioPeer's decisions per command."""

    def __init__(self, peer):
        self.peer = peer

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        self.peer._bump("ehlo")
        if self.peer.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if self.peer.extra_ehlo:
            for kw in self.peer.extra_ehlo:
                responses.insert(-1, "250-" + kw)
        return responses

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        peer = self.peer
        key = address.lower()
        if key in peer.rcpt_reject:
            peer._bump("rcpt_rejected")
            return peer.rcpt_reject_reply.format(addr=address)
        if peer._take_for(peer.rcpt_tempfail, key):
            peer._bump("rcpt_tempfailed")
            return peer.rcpt_tempfail_reply.format(addr=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        peer = self.peer
        peer._bump("transactions")
        got = Received(
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content), host=peer.address,
            tls=server._tls_protocol is not None,
            mail_options=list(envelope.mail_options),
            connection=server.conn_no)
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        delay = peer._take_delay()
        if delay:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # The client gave up (closed) before our reply.
                peer._record("late", got)
                raise
        if peer.on_data is not None:
            reply = peer.on_data(got)
            if reply is not None:
                peer._record("refused" if reply[:1] != "2" else "messages",
                             got)
                return reply
        bad = [r for r in rcpts if r in peer.data_reject]
        if bad:
            peer._record("refused", got)
            return peer.data_reject_reply.format(addr=bad[0])
        for r in rcpts:
            if peer._take_for(peer.data_tempfail, r):
                peer._record("tempfailed", got)
                return peer.data_tempfail_reply.format(addr=r)
        peer._record("messages", got)
        return "250 2.0.0 OK queued"


def _budget(spec):
    """{addr: times} from a dict, or from an iterable (each once)."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {k.lower(): v for k, v in spec.items()}
    return {k.lower(): 1 for k in spec}


class AioPeer:
    """An aiosmtpd SMTP server on host:port that records and misbehaves.

    Behaviour (all optional; a "budget" is how many times to misbehave,
    an int or ALWAYS; it is consumed as it is used):
      pipelining=True      advertise PIPELINING in EHLO (aiosmtpd itself
                           never does; False = not advertised)
      greet_421=0          budget: connections answered with greet_reply
                           (421) instead of 220, then closed
      rcpt_tempfail        {addr: budget} or iterable of addrs (budget 1):
                           RCPT answered 451 while budget lasts, then 250
      rcpt_reject          iterable of addrs: RCPT always answered 550
      data_tempfail        like rcpt_tempfail, 451 after the final dot for a
                           transaction holding that recipient
      data_reject          iterable of addrs: 550 after the final dot
      drop_in_data=0       budget: DATA transactions where the peer sends
                           354, reads one body line and closes the
                           connection (drop_mode "close" = FIN, "reset")
      data_delay=0.0       seconds to wait before replying to the final dot,
      data_delay_times     for this many transactions (default ALWAYS)
      tls=None             (certfile, keyfile): offer STARTTLS
      require_starttls     refuse MAIL before STARTTLS (530)
      on_data              callable(Received) -> reply str or None (None =
                           default handling), run after any delay
      smtputf8=False       advertise SMTPUTF8
    Records (read them after the client is done; all are copies):
      messages             Received accepted with 250 (in arrival order)
      refused              Received answered 5xx after the dot
      tempfailed           Received answered 4xx after the dot
      late                 Received whose client hung up during data_delay
      counters             connections, greetings_refused, ehlo, starttls,
                           mail_cmds, rcpt_cmds, rcpt_rejected,
                           rcpt_tempfailed, transactions (final dots seen),
                           drops, pipelined (commands sent before the
                           previous reply), max_concurrent
    Attributes may be changed while it runs (e.g. peer.drop_in_data = 0).
    """

    def __init__(self, host="127.0.0.2", port=0, *, hostname="aiopeer.test",
                 pipelining=True, greet_421=0,
                 greet_reply="421 4.3.2 Service not available, try later",
                 rcpt_tempfail=None,
                 rcpt_tempfail_reply="451 4.7.1 <{addr}>: greylisted, "
                                     "try again later",
                 rcpt_reject=(),
                 rcpt_reject_reply="550 5.1.1 <{addr}>: Recipient address "
                                   "rejected: User unknown",
                 data_tempfail=None,
                 data_tempfail_reply="451 4.3.0 <{addr}>: temporary "
                                     "failure, try again later",
                 data_reject=(),
                 data_reject_reply="550 5.7.1 <{addr}>: Message refused "
                                   "by content filter",
                 drop_in_data=0, drop_mode="close",
                 data_delay=0.0, data_delay_times=ALWAYS,
                 tls=None, require_starttls=False, on_data=None,
                 smtputf8=False, extra_ehlo=(), timeout=60):
        self.host = host
        self.port = port
        self.hostname = hostname
        self.pipelining = pipelining
        self.greet_421 = greet_421
        self.greet_reply = greet_reply
        self.rcpt_tempfail = _budget(rcpt_tempfail)
        self.rcpt_tempfail_reply = rcpt_tempfail_reply
        self.rcpt_reject = {a.lower() for a in rcpt_reject}
        self.rcpt_reject_reply = rcpt_reject_reply
        self.data_tempfail = _budget(data_tempfail)
        self.data_tempfail_reply = data_tempfail_reply
        self.data_reject = {a.lower() for a in data_reject}
        self.data_reject_reply = data_reject_reply
        self.drop_in_data = drop_in_data
        self.drop_mode = drop_mode
        self.data_delay = data_delay
        self.data_delay_times = data_delay_times
        self.on_data = on_data
        self.extra_ehlo = list(extra_ehlo)
        self._tls_context = None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._tls_context = ctx
        self._smtp_kwargs = dict(
            hostname=hostname, tls_context=self._tls_context,
            require_starttls=require_starttls, enable_SMTPUTF8=smtputf8,
            timeout=timeout)
        self._lock = threading.Lock()
        self._records = {"messages": [], "refused": [], "tempfailed": [],
                         "late": []}
        self._counters = dict.fromkeys(
            ["connections", "greetings_refused", "ehlo", "starttls",
             "mail_cmds", "rcpt_cmds", "rcpt_rejected", "rcpt_tempfailed",
             "transactions", "drops", "pipelined", "max_concurrent"], 0)
        self._open = set()
        self._loop = None
        self._thread = None
        self._server = None
        self._handler = _PeerHandler(self)

    # -- life cycle

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def start(self):
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        error = []

        def factory():
            return _PeerSMTP(self, self._handler, loop=self._loop,
                             **self._smtp_kwargs)

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._server = self._loop.run_until_complete(
                    self._loop.create_server(factory, self.host, self.port,
                                             reuse_address=True,
                                             backlog=512))
            except Exception as e:  # bind failure
                error.append(e)
                ready.set()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"AioPeer {self.host}")
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError(f"AioPeer on {self.host} did not start")
        if error:
            self._thread.join(5)
            raise error[0]
        return self

    def stop(self):
        if self._loop is None or self._thread is None:
            return

        async def shutdown():
            try:
                self._server.close()
                for proto in list(self._open):
                    try:
                        if proto.transport is not None:
                            proto.transport.abort()
                    except Exception:
                        # A TLS transport that is already closing can
                        # fail to abort; it goes away with the loop.
                        pass
                await asyncio.sleep(0)
                tasks = [t for t in asyncio.all_tasks()
                         if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                if tasks:
                    await asyncio.wait(tasks, timeout=2)
            finally:
                self._loop.stop()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
            self._thread.join(10)
            if self._thread.is_alive():
                raise RuntimeError(f"AioPeer {self.address} did not stop")
        self._thread = None

    # -- results (copies, safe from the test thread)

    @property
    def messages(self):
        with self._lock:
            return list(self._records["messages"])

    @property
    def refused(self):
        with self._lock:
            return list(self._records["refused"])

    @property
    def tempfailed(self):
        with self._lock:
            return list(self._records["tempfailed"])

    @property
    def late(self):
        with self._lock:
            return list(self._records["late"])

    @property
    def counters(self):
        with self._lock:
            return dict(self._counters)

    def __getattr__(self, name):
        # peer.connections, peer.transactions, ... read the counters.
        counters = self.__dict__.get("_counters")
        if counters is not None and name in counters:
            with self.__dict__["_lock"]:
                return counters[name]
        raise AttributeError(name)

    def received_by_rcpt(self):
        """{recipient (lower case): [Received, ...]} over accepted messages."""
        out = {}
        for m in self.messages:
            for r in m.rcpt_tos:
                out.setdefault(r.lower(), []).append(m)
        return out

    def wait_messages(self, n, timeout=5.0):
        return wait_until(lambda: len(self.messages) >= n, timeout)

    # -- called from the server thread

    def _bump(self, name, by=1):
        with self._lock:
            self._counters[name] += by

    def _record(self, kind, got):
        with self._lock:
            self._records[kind].append(got)

    def _take(self, attr):
        """Consume one unit of the budget in attribute attr."""
        with self._lock:
            left = getattr(self, attr)
            if left and left > 0:
                setattr(self, attr, left - 1)
                return True
            return False

    def _take_for(self, budgets, key):
        with self._lock:
            left = budgets.get(key, 0)
            if left and left > 0:
                budgets[key] = left - 1
                return True
            return False

    def _take_delay(self):
        with self._lock:
            if self.data_delay and self.data_delay_times > 0:
                self.data_delay_times -= 1
                return self.data_delay
            return 0

    def _connection_opened(self, proto):
        with self._lock:
            self._counters["connections"] += 1
            self._open.add(proto)
            self._counters["max_concurrent"] = max(
                self._counters["max_concurrent"], len(self._open))
            return self._counters["connections"]

    def _connection_closed(self, proto):
        with self._lock:
            self._open.discard(proto)


# ------------------------------------------------------------ list files

class ScriptedPeer:
    """A raw SMTP server in a thread: a well-behaved one by default, and
    whatever a test scripts for it.

      replies={"DATA": "250 2.0.0 ok"}  the reply to a verb (MAIL, RCPT,
            DATA, RSET, the final dot as "."), a str, or a list of str used
            one per command and then the default (a budget)
      max_concurrent=N  connections beyond N get "421 4.7.0 too many
            connections" and are closed
      ehlo=[...]        EHLO keywords (default PIPELINING, 8BITMIME)
      stall_starttls    answer STARTTLS with 220, then read and say nothing

    Records: .messages (dicts: mail_from, rcpts, data bytes), .counts
    (connections, refused, mail, rcpt, data, rset, bodies).
    """

    def __init__(self, host="127.0.0.2", port=0, *, replies=None,
                 max_concurrent=None, ehlo=("PIPELINING", "8BITMIME"),
                 stall_starttls=False):
        self.host, self.port = host, port
        self.replies = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                        for k, v in (replies or {}).items()}
        self.max_concurrent = max_concurrent
        self.ehlo = list(ehlo)
        self.stall_starttls = stall_starttls
        self.messages = []
        self.counts = {k: 0 for k in ("connections", "refused", "mail",
                                      "rcpt", "data", "rset", "bodies")}
        self._open = 0
        self._lock = threading.Lock()
        self._loop = self._thread = self._server = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _reply_for(self, verb, default):
        with self._lock:
            r = self.replies.get(verb)
            if isinstance(r, list):
                return r.pop(0) if r else default
            return r if r is not None else default

    async def _session(self, reader, writer):
        with self._lock:
            self.counts["connections"] += 1
            self._open += 1
            over = (self.max_concurrent is not None
                    and self._open > self.max_concurrent)
        try:
            if over:
                with self._lock:
                    self.counts["refused"] += 1
                writer.write(b"421 4.7.0 too many connections\r\n")
                await writer.drain()
                return
            writer.write(b"220 scripted.test ESMTP\r\n")
            mail_from, rcpts = None, []
            while True:
                line = await reader.readline()
                if not line:
                    return
                cmd = line.decode("latin-1").rstrip("\r\n")
                verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "EHLO":
                    lines = ["scripted.test"] + self.ehlo
                    out = "".join(f"250-{x}\r\n" for x in lines[:-1])
                    writer.write((out + f"250 {lines[-1]}\r\n").encode())
                elif verb == "HELO":
                    writer.write(b"250 scripted.test\r\n")
                elif verb == "STARTTLS" and self.stall_starttls:
                    writer.write(b"220 2.0.0 go ahead\r\n")
                    await writer.drain()
                    while await reader.read(4096):
                        pass
                    return
                elif verb == "MAIL":
                    with self._lock:
                        self.counts["mail"] += 1
                    mail_from, rcpts = cmd, []
                    writer.write(self._reply_for(
                        "MAIL", "250 2.1.0 ok").encode("latin-1") + b"\r\n")
                elif verb == "RCPT":
                    with self._lock:
                        self.counts["rcpt"] += 1
                    r = self._reply_for("RCPT", "250 2.1.5 ok")
                    if r.startswith("2"):
                        rcpts.append(cmd.split(":", 1)[1].strip("<> "))
                    writer.write(r.encode("latin-1") + b"\r\n")
                elif verb == "DATA":
                    with self._lock:
                        self.counts["data"] += 1
                    r = self._reply_for("DATA", "354 go ahead" if rcpts
                                        else "554 5.5.1 no valid "
                                        "recipients")
                    writer.write(r.encode("latin-1") + b"\r\n")
                    if r.startswith("354"):
                        await writer.drain()
                        data = []
                        while True:
                            dl = await reader.readline()
                            if not dl or dl == b".\r\n":
                                break
                            data.append(dl[1:] if dl.startswith(b"..")
                                        else dl)
                        if not dl:
                            return
                        with self._lock:
                            self.counts["bodies"] += 1
                        r = self._reply_for(".", "250 2.0.0 queued")
                        if r.startswith("2"):
                            with self._lock:
                                self.messages.append(
                                    {"mail_from": mail_from,
                                     "rcpts": list(rcpts),
                                     "data": b"".join(data)})
                        writer.write(r.encode("latin-1") + b"\r\n")
                        if r.startswith("421"):
                            await writer.drain()
                            return
                elif verb == "RSET":
                    with self._lock:
                        self.counts["rset"] += 1
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"502 5.5.2 what\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            with self._lock:
                self._open -= 1
            writer.close()

    def start(self):
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._session, self.host, self.port,
                                     reuse_address=True))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"ScriptedPeer {self.host}")
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError(f"ScriptedPeer on {self.host} did not start")
        return self

    def stop(self):
        if self._thread is None:
            return

        async def shutdown():
            self._server.close()
            tasks = [t for t in asyncio.all_tasks()
                     if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(10)
        self._thread = None


def write_list(path, header, rows, *, bom=False, newline="\n",
               encoding="utf-8"):
    """Write a CSV list (RFC 4180 quoting, via the csv module).

    header: column names; rows: sequences of values.  Returns path.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(header)
    for row in rows:
        w.writerow(row)
    data = buf.getvalue().encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    pathlib.Path(path).write_bytes(data)
    return path


# ------------------------------------------------------------ mailroom send

class SendResult:
    """Outcome of one `mailroom send` run."""

    def __init__(self, proc, duration, workdir, list_path, accounting_path,
                 accounting_format, reject_path, forensics_dir, argv):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.duration = duration
        self.workdir = workdir
        self.list_path = list_path
        self.accounting_path = accounting_path
        self.accounting_format = accounting_format
        self.reject_path = reject_path
        self.forensics_dir = forensics_dir
        self.argv = argv
        self.summary = {}
        for line in self.stdout.splitlines():
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_ ]*):\s*(.*?)\s*$", line)
            if m:
                self.summary[m.group(1).strip()] = m.group(2)
        self._acct = None

    def __repr__(self):
        return (f"<mailroom send rc={self.rc}\n--- argv: {self.argv}\n"
                f"--- stdout:\n{self.stdout[-3000:]}\n"
                f"--- stderr:\n{self.stderr[-3000:]}>")

    def summary_lines(self):
        """Every "key: value" line of the summary, repeated keys too."""
        out = []
        for line in self.stdout.splitlines():
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_ ]*):\s*(.*?)\s*$", line)
            if m:
                out.append((m.group(1).strip(), m.group(2)))
        return out

    def count(self, key):
        """Integer value of summary line `key:` (KeyError if absent)."""
        if key not in self.summary:
            raise KeyError(f"no '{key}:' in summary:\n{self.stdout}")
        return int(re.match(r"-?\d+", self.summary[key]).group(0))

    @property
    def accounting(self):
        """Accounting records as dicts (CSV header checked exactly)."""
        if self._acct is None:
            self._acct = read_accounting(self.accounting_path,
                                         self.accounting_format)
        return self._acct

    def records(self, type=None, recipient=None):
        return [r for r in self.accounting
                if (type is None or r["type"] == type) and
                (recipient is None or
                 r["recipient"].lower() == recipient.lower())]

    def final(self, recipient):
        """The one final (delivered/bounced) record of recipient."""
        finals = [r for r in self.records(recipient=recipient)
                  if r["type"] in FINAL_TYPES]
        assert len(finals) == 1, (recipient, finals)
        return finals[0]

    @property
    def rejects(self):
        """Reject file rows as dicts (line, reason, row); header checked."""
        return read_rejects(self.reject_path)


def read_accounting(path, fmt="csv"):
    path = pathlib.Path(path)
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if fmt == "json":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            assert isinstance(rec, dict), f"line {n}: {line!r}"
            assert sorted(rec) == sorted(ACCOUNTING_FIELDS), \
                f"line {n} keys {sorted(rec)}"
            out.append({k: "" if v is None else str(v)
                        for k, v in rec.items()})
        return out
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows, f"{path} is empty"
    assert rows[0] == ACCOUNTING_FIELDS, f"header {rows[0]}"
    out = []
    for row in rows[1:]:
        assert len(row) == len(ACCOUNTING_FIELDS), row
        out.append(dict(zip(ACCOUNTING_FIELDS, row)))
    return out


def read_rejects(path):
    text = pathlib.Path(path).read_text(encoding="utf-8",
                                        errors="surrogateescape")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows and rows[0] == ["line", "reason", "row"], rows[:1]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


ISO_UTC = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00|\+0000)$")


def assert_accounting_sane(result, recipients=None):
    """Invariants every accounting file must keep.

    Every record has a known type and an ISO 8601 UTC time; each recipient
    has exactly one final record (delivered or bounced) and nothing after
    it; deferred records count attempts upwards.  recipients: when given,
    exactly these addresses have a final record.
    """
    finals = {}
    for r in result.accounting:
        assert r["type"] in RECORD_TYPES, r
        assert ISO_UTC.match(r["time"]), r["time"]
        if r["type"] in ("rejected", "backoff"):
            continue
        rcpt = r["recipient"].lower()
        assert rcpt not in finals, f"record after final record: {r}"
        if r["type"] in FINAL_TYPES:
            finals[rcpt] = r
    if recipients is not None:
        want = {a.lower() for a in recipients}
        assert set(finals) == want, (
            f"missing final: {sorted(want - set(finals))[:5]} "
            f"unexpected: {sorted(set(finals) - want)[:5]}")
    return finals


def run_send(mailroom, workdir, *, template=None, rows=None,
             header=("email", "name"), list_bytes=None, template_path=None,
             list_path=None, routes=(), resolver=None, opts=None, quick=True,
             accounting=True, accounting_format=None, forensics=True,
             reject_file=None, mail_from=None, extra_args=(), timeout=60,
             user=None):
    """Write the inputs into workdir and run `mailroom send`.

    template: str or bytes (written to workdir/template.eml) unless
    template_path is given.  The list is list_bytes, else header + rows via
    write_list(), written to workdir/list.csv, unless list_path is given.
    routes: {domain: "host:port"} or [(domain, "host:port")] -> --route.
    opts: {"section.key": value} -> -o, on top of QUICK_OPTS when quick.
    accounting: True = workdir/accounting.csv (or .json), a path, or False.
    forensics: True = workdir/forensics, a path, or False (not passed).
    user: run as this user via setpriv (files must be reachable by it).
    Returns a SendResult; the run is killed after timeout seconds.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if template_path is None:
        template_path = workdir / "template.eml"
        data = template.encode() if isinstance(template, str) else template
        template_path.write_bytes(data)
    if list_path is None:
        list_path = workdir / "list.csv"
        if list_bytes is not None:
            pathlib.Path(list_path).write_bytes(list_bytes)
        else:
            write_list(list_path, header, rows or [])
    # mailroom: the binary, or an argv prefix (e.g. prlimit ... binary).
    prefix = list(mailroom) if isinstance(mailroom, (list, tuple)) \
        else [mailroom]
    argv = prefix + ["send", "--template", str(template_path),
            "--list", str(list_path)]
    all_opts = dict(QUICK_OPTS) if quick else {}
    all_opts.update(opts or {})
    for k, v in all_opts.items():
        argv += ["-o", f"{k}={v}"]
    if isinstance(routes, dict):
        routes = list(routes.items())
    for domain, target in routes:
        argv += ["--route", f"{domain}={target}"]
    if resolver:
        argv += ["--resolver", resolver]
    fmt = accounting_format or "csv"
    acct_path = None
    if accounting:
        acct_path = (workdir / f"accounting.{fmt}" if accounting is True
                     else pathlib.Path(accounting))
        argv += ["--accounting", str(acct_path)]
        if accounting_format:
            argv += ["--accounting-format", accounting_format]
    forensics_dir = None
    if forensics:
        forensics_dir = (workdir / "forensics" if forensics is True
                         else pathlib.Path(forensics))
        argv += ["--forensics-dir", str(forensics_dir)]
    if reject_file:
        argv += ["--reject-file", str(reject_file)]
        reject_path = pathlib.Path(reject_file)
    else:
        reject_path = pathlib.Path(str(list_path) + ".rejects.csv")
    if mail_from:
        argv += ["--from", mail_from]
    argv += list(extra_args)
    cmd = argv
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user_group(user)}",
               "--clear-groups", "--"] + argv
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"mailroom send did not finish within {timeout}s\nargv: {argv}\n"
            f"stdout: {(e.stdout or b'')[-2000:]!r}\n"
            f"stderr: {(e.stderr or b'')[-2000:]!r}") from None
    return SendResult(proc, time.monotonic() - start, workdir, list_path,
                      acct_path, fmt, reject_path, forensics_dir, argv)


def user_group(user):
    import grp
    import pwd
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


# ------------------------------------------------------------ message checks

def forensics_file(result, record):
    """Path of the forensics file a record names (relative paths are taken
    from the run's working directory)."""
    path = pathlib.Path(record["forensics"])
    return path if path.is_absolute() else result.workdir / path


def assert_crlf_only(data):
    """Every line of data ends in CRLF: no bare LF, no bare CR."""
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF in message"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR in message"
    assert data.endswith(b"\r\n"), "message does not end in CRLF"


def max_line_length(data):
    """Longest line in octets, line ends excluded."""
    return max((len(l) for l in re.split(rb"\r?\n", data)), default=0)


# ------------------------------------------------------------ CountingSink

class CountingSink:
    """A fast SMTP sink that only counts: a raw asyncio server in a thread,
    for campaigns of hundreds of thousands of messages (aiosmtpd manages
    about 1,500 a second; this one keeps up with mailroom).

    It speaks just enough SMTP for a well-behaved client: 220 greeting;
    EHLO (PIPELINING, 8BITMIME) and HELO; MAIL, RCPT, DATA (354, then the
    body read with one readuntil(b"\\r\\n.\\r\\n")), RSET, NOOP, QUIT; 502 for
    anything else.  Replies to pipelined commands are gathered and written
    together when the client has sent nothing more, so that a pipelining
    client costs one write per transaction.

    A message counts once its final dot has arrived (after the optional
    delay, just before the 250 is written): each of its recipients (lower
    case) gets one more in .counts and .total grows by its number of
    recipients.  A client killed between our count and reading the 250 has
    thus been counted: that is the "in flight" duplicate a resume resends.

      delay=0.0    seconds to wait (asyncio.sleep) before answering each
                   final dot; may be changed while it runs (e.g. to make a
                   run last, then to let it finish).

    Reads (.total, .counts, .messages, .connections, .active, snapshot(),
    wait_total(), wait_idle()) take a lock and return copies: safe from
    the test thread at any time.

    Throughput, measured here (2 cores shared with mailroom, which
    pipelines; build/mailroom, one transaction per 1 KB personalized
    message, 100 domains routed to the sink, about 200 sessions):
    200,000 messages in 7.5 s, about 26,500 messages a second, with an
    ephemeral send; 12 s (16,500 a second) with --store and a 300 ms
    snapshot interval.  A 200,000-message campaign takes well under a
    minute.
    """

    def __init__(self, host="127.0.0.2", port=0, *, delay=0.0,
                 hostname="sink.test"):
        self.host, self.port = host, port
        self.delay = delay
        self.hostname = hostname
        self._lock = threading.Lock()
        self._counts = {}
        self._total = 0
        self._messages = 0
        self._connections = 0
        self._active = 0
        self._loop = self._thread = self._server = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # -- reads, from any thread

    @property
    def total(self):
        """Recipient deliveries so far (a message to n recipients: n)."""
        with self._lock:
            return self._total

    @property
    def counts(self):
        """{recipient (lower case): times received} (a copy)."""
        with self._lock:
            return dict(self._counts)

    @property
    def messages(self):
        """Messages (final dots answered 250) so far."""
        with self._lock:
            return self._messages

    @property
    def connections(self):
        with self._lock:
            return self._connections

    @property
    def active(self):
        """Sessions open now (a killed client's end when the sink sees
        its connection close, after any delay in progress)."""
        with self._lock:
            return self._active

    def wait_idle(self, timeout=10.0):
        """Block until no session is open (nothing more can be counted
        for a client that has exited); returns whether that happened."""
        return bool(wait_until(lambda: self.active == 0, timeout, 0.01))

    def snapshot(self):
        """(total, counts copy) read together."""
        with self._lock:
            return self._total, dict(self._counts)

    def wait_total(self, n, timeout=30.0):
        """Block until .total >= n or timeout; returns whether it did."""
        return bool(wait_until(lambda: self.total >= n, timeout, 0.01))

    # -- the server

    async def _session(self, reader, writer):
        with self._lock:
            self._connections += 1
            self._active += 1
        out = bytearray()
        rcpts = []
        ehlo = (f"250-{self.hostname}\r\n250-PIPELINING\r\n"
                "250-8BITMIME\r\n250 SIZE 104857600\r\n").encode()
        try:
            writer.write(f"220 {self.hostname} ESMTP\r\n".encode())
            while True:
                # Flush the gathered replies when the client has sent no
                # further complete command (it waits for them).
                if out and b"\n" not in reader._buffer:
                    writer.write(bytes(out))
                    out.clear()
                    if writer.transport.get_write_buffer_size() > 1 << 20:
                        await writer.drain()
                line = await reader.readuntil(b"\n")
                verb = line[:4].upper()
                if verb == b"RCPT":
                    lt, gt = line.find(b"<"), line.rfind(b">")
                    addr = line[lt + 1:gt] if 0 <= lt < gt else \
                        line[8:].strip()
                    rcpts.append(addr.decode("utf-8", "replace").lower())
                    out += b"250 2.1.5 ok\r\n"
                elif verb == b"MAIL":
                    rcpts = []
                    out += b"250 2.1.0 ok\r\n"
                elif verb == b"DATA":
                    if not rcpts:
                        out += b"554 5.5.1 no valid recipients\r\n"
                        continue
                    out += b"354 go ahead\r\n"
                    writer.write(bytes(out))
                    out.clear()
                    await reader.readuntil(b"\r\n.\r\n")
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    with self._lock:
                        for r in rcpts:
                            self._counts[r] = self._counts.get(r, 0) + 1
                        self._total += len(rcpts)
                        self._messages += 1
                    rcpts = []
                    out += b"250 2.0.0 queued\r\n"
                elif verb == b"EHLO":
                    out += ehlo
                elif verb == b"HELO":
                    out += f"250 {self.hostname}\r\n".encode()
                elif verb == b"RSET":
                    rcpts = []
                    out += b"250 2.0.0 ok\r\n"
                elif verb == b"NOOP":
                    out += b"250 2.0.0 ok\r\n"
                elif verb == b"QUIT":
                    out += b"221 2.0.0 bye\r\n"
                    writer.write(bytes(out))
                    await writer.drain()
                    return
                else:
                    out += b"502 5.5.2 not implemented\r\n"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, asyncio.CancelledError):
            return
        finally:
            with self._lock:
                self._active -= 1
            writer.close()

    def start(self):
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        error = []

        def run():
            asyncio.set_event_loop(self._loop)
            try:
                self._server = self._loop.run_until_complete(
                    asyncio.start_server(self._session, self.host,
                                         self.port, reuse_address=True,
                                         backlog=512, limit=1 << 22))
            except Exception as e:  # bind failure
                error.append(e)
                ready.set()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"CountingSink {self.host}")
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError(f"CountingSink on {self.host} did not start")
        if error:
            self._thread.join(5)
            self._thread = None
            raise error[0]
        return self

    def stop(self):
        if self._thread is None:
            return

        async def shutdown():
            try:
                self._server.close()
                tasks = [t for t in asyncio.all_tasks()
                         if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                if tasks:
                    await asyncio.wait(tasks, timeout=2)
            finally:
                self._loop.stop()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
            self._thread.join(10)
            if self._thread.is_alive():
                raise RuntimeError(f"CountingSink {self.address} did not "
                                   "stop")
        self._thread = None


# -------------------------------------- a ScriptedPeer with per-address RCPT

class _TapReader:
    """Wraps a StreamReader: remembers the last line read for its peer."""

    def __init__(self, reader, peer):
        self._reader, self._peer = reader, peer

    async def readline(self):
        line = await self._reader.readline()
        self._peer._last_line = line
        return line

    def __getattr__(self, name):
        return getattr(self._reader, name)


class RcptScriptedPeer(ScriptedPeer):
    """A ScriptedPeer that also answers RCPT per address.

      rcpt_replies={"a@x.test": "451 4.7.1 try later"}  the reply to every
            RCPT TO naming that address (case-insensitive), for ever;
            other addresses get the usual ScriptedPeer replies.

    Records, besides ScriptedPeer's: .rcpts_seen() -> {address (lower
    case): RCPT commands received for it}.

    It reads the address from the command line that ScriptedPeer's session
    just read: the session calls _reply_for() right after readline() with
    no await in between, so the line is the right one even with many
    sessions on the loop.
    """

    def __init__(self, host="127.0.0.2", port=0, *, rcpt_replies=None,
                 **kw):
        super().__init__(host, port, **kw)
        self.rcpt_replies = {k.lower(): v
                             for k, v in (rcpt_replies or {}).items()}
        self._rcpt_seen = {}
        self._last_line = b""

    async def _session(self, reader, writer):
        return await super()._session(_TapReader(reader, self), writer)

    def _reply_for(self, verb, default):
        if verb == "RCPT":
            cmd = self._last_line.decode("latin-1")
            addr = cmd.split(":", 1)[1].strip() if ":" in cmd else ""
            addr = addr.split(">", 1)[0].strip("<> ").lower()
            with self._lock:
                self._rcpt_seen[addr] = self._rcpt_seen.get(addr, 0) + 1
            if addr in self.rcpt_replies:
                return self.rcpt_replies[addr]
        return super()._reply_for(verb, default)

    def rcpts_seen(self):
        with self._lock:
            return dict(self._rcpt_seen)


# ---------------------------------------------- mailroom in the background

class MailroomRun:
    """A `mailroom` command running in the background, for tests that
    signal or kill it.  Its stdout and stderr go to files in workdir
    (NAME.out, NAME.err), so what it wrote survives a kill -9.

      run = MailroomRun(argv, workdir, "run1")
      run.wait_for(lambda: sink.total >= 1000, timeout=30)
      run.kill()                 # SIGKILL by PID, then reaped
      run.stdout, run.stderr     # text written so far
    """

    def __init__(self, argv, workdir, name="run"):
        self.argv = [str(a) for a in argv]
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.out_path = self.workdir / f"{name}.out"
        self.err_path = self.workdir / f"{name}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     cwd=self.workdir)
        self.rc = None

    @property
    def pid(self):
        return self.proc.pid

    def poll(self):
        rc = self.proc.poll()
        if rc is not None:
            self._finish(rc)
        return rc

    def _finish(self, rc):
        self.rc = rc
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def signal(self, sig):
        """Send sig to the process (by PID) if it still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self, timeout=10):
        """SIGKILL, then reap; returns the exit status (-9 when it was
        still running)."""
        self.signal(signal.SIGKILL)
        return self.wait(timeout)

    def wait(self, timeout=60):
        """Wait for the exit (killed with SIGKILL after timeout, and an
        AssertionError with its output); returns the exit status."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._finish(self.proc.returncode)
            raise AssertionError(
                f"{self.name} did not finish within {timeout}s\n{self}")
        self._finish(rc)
        return rc

    def wait_for(self, predicate, timeout=30.0, interval=0.005):
        """Poll predicate() while the process runs: True once it holds;
        False at timeout or when the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.poll() is not None:
                return bool(predicate())
            time.sleep(interval)
        return False

    @property
    def stdout(self):
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def __repr__(self):
        return (f"<{self.name} pid={self.pid} rc={self.rc}\n--- argv: "
                f"{self.argv}\n--- stdout:\n{self.stdout[-3000:]}\n"
                f"--- stderr:\n{self.stderr[-3000:]}>")


def inflight_at_crash(stdout):
    """The values of the `in-flight-at-crash: N` lines in stdout."""
    return [int(m) for m in re.findall(r"(?m)^in-flight-at-crash: (\d+)\s*$",
                                       stdout)]


INFLIGHT_REPLY = "in flight at a crash"
"""How the reply of an accounting record written for a recipient that was in
flight at a crash begins (type deferred, dsn 4.4.7)."""


def is_inflight_record(rec):
    return (rec["type"] == "deferred" and
            rec["reply"].startswith(INFLIGHT_REPLY))


def read_accounting_partial(path):
    """Accounting records (CSV) of a file that may be being written: only
    whole lines; [] when the file is missing or empty."""
    try:
        data = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        return []
    data = data[:data.rfind(b"\n") + 1]
    if not data:
        return []
    rows = list(csv.reader(io.StringIO(
        data.decode("utf-8", "surrogateescape"), newline="")))
    assert rows[0] == ACCOUNTING_FIELDS, f"header {rows[0]}"
    return [dict(zip(ACCOUNTING_FIELDS, r)) for r in rows[1:]
            if len(r) == len(ACCOUNTING_FIELDS)]


# ------------------------------------------------------- recovery journals

JOURNAL_HDR_SIZE = 64
JOURNAL_REC_SIZE = 16
_JOURNAL_NAME = re.compile(r"^c(\d+)-g(\d+)-w(\d+)-s(\d+)\.jnl$")


def journal_segments(directory):
    """The journal segment files in directory, oldest first (campaign,
    generation, writer, segment, as their names say)."""
    out = []
    for p in pathlib.Path(directory).glob("*.jnl"):
        m = _JOURNAL_NAME.match(p.name)
        if m:
            out.append((tuple(int(x) for x in m.groups()), p))
    return [p for _, p in sorted(out)]


def journal_written_records(path):
    """Records written in a segment: those before its first all-zero
    record (unused, preallocated space) or its end."""
    data = pathlib.Path(path).read_bytes()[JOURNAL_HDR_SIZE:]
    zero = bytes(JOURNAL_REC_SIZE)
    n = 0
    while (n + 1) * JOURNAL_REC_SIZE <= len(data):
        if data[n * JOURNAL_REC_SIZE:(n + 1) * JOURNAL_REC_SIZE] == zero:
            break
        n += 1
    return n
