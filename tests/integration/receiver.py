"""A receiving MTA with a character, in a process of its own (aiosmtpd).

Run by tests/integration/test_shaping.py and bench/shaping.py, one process
per receiver, so that three receivers and the test never share one
interpreter lock:

  /usr/bin/python3 receiver.py --listen 127.0.0.2:2525 --stats FILE MODE

MODE:
  fast       accepts everything at once.
  slow       waits --delay seconds (0.3) before each reply to EHLO, MAIL,
             RCPT and the final dot.
  throttle   answers "421 4.7.0" to the MAIL after --per-conn messages on
             one connection (then hangs up), and "451 4.7.0" to any RCPT
             past --rate accepted recipients in the last second (the
             receiver as a whole).

On SIGTERM (or SIGINT) it writes FILE as JSON and exits: every accepted
recipient with its time (and with --keep every message as received), the times of each 451 and 421, the most
connections open at once, how many connections there were, and from
which client addresses.  It prints
"ready PORT" on stdout once it listens.
"""
import argparse
import asyncio
import collections
import json
import signal
import sys
import time

from aiosmtpd.smtp import SMTP


class Stats:
    def __init__(self):
        self.accepted = []       # (time, rcpt)
        self.deferred = []       # times of 451 4.7.0
        self.conn_421 = []       # times of 421 4.7.0 (per connection)
        self.open = 0
        self.max_open = 0
        self.connections = 0
        self.peers = collections.Counter()   # connections per client IP
        self.rcpt_peer = {}      # rcpt -> client IP of its transaction
        self.messages = []       # with --keep: (rcpts, data as latin-1)
        self.senders = []        # with --keep: each message's MAIL FROM
        self.window = collections.deque()   # accepted RCPT times, 1 s

    def dump(self, path):
        with open(path, "w") as f:
            json.dump({
                "accepted": self.accepted,
                "deferred": self.deferred,
                "conn_421": self.conn_421,
                "max_open": self.max_open,
                "connections": self.connections,
                "peers": dict(self.peers),
                "rcpt_peer": self.rcpt_peer,
                "messages": self.messages,
                "senders": self.senders,
            }, f)


class Handler:
    def __init__(self, args, stats):
        self.args = args
        self.stats = stats

    async def _slow(self):
        if self.args.mode == "slow":
            await asyncio.sleep(self.args.delay)

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        await self._slow()
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        await self._slow()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        await self._slow()
        if self.args.mode == "throttle":
            now = time.monotonic()
            w = self.stats.window
            while w and w[0] <= now - 1.0:
                w.popleft()
            if len(w) >= self.args.rate:
                self.stats.deferred.append(time.time())
                return "451 4.7.0 Rate limit exceeded, slow down"
            w.append(now)
        if self.args.reject_prefix and address.lower().startswith(
                self.args.reject_prefix):
            return f"550 5.1.1 <{address}>: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        await self._slow()
        now = time.time()
        for r in envelope.rcpt_tos:
            self.stats.accepted.append((now, r.lower()))
            if session.peer:
                self.stats.rcpt_peer[r.lower()] = session.peer[0]
        if self.args.keep:
            self.stats.messages.append(
                ([r.lower() for r in envelope.rcpt_tos],
                 bytes(envelope.original_content).decode("latin-1")))
            self.stats.senders.append(envelope.mail_from)
        server.messages_here += 1
        return "250 2.0.0 OK queued"


class ReceiverSMTP(SMTP):
    def __init__(self, args, stats, *a, **kw):
        super().__init__(*a, **kw)
        self.args = args
        self.stats = stats
        self.messages_here = 0

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.stats.open += 1
            self.stats.connections += 1
            self.stats.max_open = max(self.stats.max_open, self.stats.open)
            peer = transport.get_extra_info("peername")
            if peer:
                self.stats.peers[peer[0]] += 1

    def connection_lost(self, error):
        self.stats.open -= 1
        super().connection_lost(error)

    async def smtp_MAIL(self, arg):
        if (self.args.mode == "throttle"
                and self.messages_here >= self.args.per_conn):
            self.stats.conn_421.append(time.time())
            await self.push("421 4.7.0 Too many messages on this "
                            "connection, come back later")
            self.transport.close()
            return
        await super().smtp_MAIL(arg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["fast", "slow", "throttle"])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--per-conn", type=int, default=20)
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument("--reject-prefix", default="",
                    help="550 5.1.1 to recipients starting with this")
    ap.add_argument("--keep", action="store_true",
                    help="keep every message (small tests only)")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    stats = Stats()
    handler = Handler(args, stats)

    async def run():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        server = await loop.create_server(
            lambda: ReceiverSMTP(args, stats, handler,
                                 hostname="receiver.test",
                                 data_size_limit=10 << 20,
                                 ident="receiver"),
            host=host, port=int(port), backlog=512)
        print("ready", server.sockets[0].getsockname()[1], flush=True)
        await done.wait()
        server.close()
        stats.dump(args.stats)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
