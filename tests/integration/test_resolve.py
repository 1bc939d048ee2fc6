"""`mailroom resolve` against a real dnsmasq (and, for answers dnsmasq
cannot give: SOA negative TTLs, SERVFAIL, REFUSED, NODATA everywhere, many
MX records, chosen TTLs, a small scripted DNS server built on dnslib).

Covered: MX preference order and tie shuffling; implicit MX; NXDOMAIN; null
MX, alone and beside real MX records; an MX host without an address (alone:
temporary; beside a good one: skipped); static routes to an IPv4 literal,
an IPv6 literal, a name, `*` and `.suffix` with their precedence; AAAA
records after A records; a resolver on a closed port and one that never
answers (temporary failure within the dns.timeout x dns.tries bound);
negative-cache TTL from the SOA; the 10-MX limit; usage and config errors.
"""
import shlex
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port

EX_USAGE = 64
EX_CONFIG = 78


class Result:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed
        self.lines = [parse_line(line) for line in proc.stdout.splitlines()
                      if self.rc in (0, 1) and not line.startswith(" ")
                      and "=" in line]

    def hosts(self, domain):
        return [l for l in self.lines if l["domain"] == domain and "mx" in l]

    def status(self, domain):
        for l in self.lines:
            if l["domain"] == domain and "status" in l and "mx" not in l:
                return l
        return None

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def parse_line(line):
    """'d.test mx=h pref=10 ... routed=yes' -> {'domain': 'd.test', ...}"""
    words = shlex.split(line)
    fields = {"domain": words[0]}
    for w in words[1:]:
        k, _, v = w.partition("=")
        fields[k] = v
    return fields


def resolve(mailroom, *args, resolver=None, timeout=30):
    cmd = [mailroom, "resolve"]
    if resolver is not None:
        cmd += ["--resolver", resolver]
    cmd += list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout)
    return Result(proc, time.monotonic() - start)


# ---- dnsmasq -------------------------------------------------------------

def test_mx_preference_order(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("pref.test", "backup.pref.test", 20),
                      ("pref.test", "primary.pref.test", 10)],
                  hosts=[("primary.pref.test", "127.0.0.2"),
                         ("backup.pref.test", "127.0.0.3")])
    r = resolve(mailroom, "pref.test", resolver=dns.address)
    assert r.rc == 0, r
    hosts = r.hosts("pref.test")
    assert [h["mx"] for h in hosts] == ["primary.pref.test",
                                        "backup.pref.test"], r
    assert [h["pref"] for h in hosts] == ["10", "20"]
    assert [h["addrs"] for h in hosts] == ["127.0.0.2", "127.0.0.3"]
    assert all(h["port"] == "25" for h in hosts)
    assert all(h["ttl"].endswith("s") for h in hosts)
    assert all("routed" not in h and "implicit_mx" not in h for h in hosts)


def test_mx_port_from_config(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("port.test", "mx.port.test", 10)],
                  hosts=[("mx.port.test", "127.0.0.2")])
    r = resolve(mailroom, "-o", "smtp.port=2525", "port.test",
                resolver=dns.address)
    assert r.rc == 0, r
    assert r.hosts("port.test")[0]["port"] == "2525"


def test_equal_preferences_are_shuffled(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("tie.test", "a.tie.test", 10),
                      ("tie.test", "b.tie.test", 10),
                      ("tie.test", "c.tie.test", 5)],
                  hosts=[("a.tie.test", "127.0.0.2"),
                         ("b.tie.test", "127.0.0.3"),
                         ("c.tie.test", "127.0.0.4")])
    orders = set()
    for _ in range(30):
        r = resolve(mailroom, "tie.test", resolver=dns.address)
        assert r.rc == 0, r
        names = [h["mx"] for h in r.hosts("tie.test")]
        assert names[0] == "c.tie.test", r
        orders.add(tuple(names[1:]))
    # 2 * 2^-30 of failing by chance.
    assert orders == {("a.tie.test", "b.tie.test"),
                      ("b.tie.test", "a.tie.test")}


def test_implicit_mx(mailroom, dnsmasq):
    dns = dnsmasq(hosts=[("implicit.test", "127.0.0.5")])
    r = resolve(mailroom, "implicit.test", resolver=dns.address)
    assert r.rc == 0, r
    (h,) = r.hosts("implicit.test")
    assert h["mx"] == "implicit.test"
    assert h["pref"] == "0"
    assert h["addrs"] == "127.0.0.5"
    assert h["implicit_mx"] == "yes"


def test_nxdomain(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("other.test", "mx.other.test", 10)])
    r = resolve(mailroom, "missing.test", resolver=dns.address)
    assert r.rc == 1, r
    s = r.status("missing.test")
    assert s["status"] == "nxdomain", r
    assert s["reason"] == ("MX lookup for missing.test: domain does not "
                           "exist (NXDOMAIN)")
    assert s["ttl"] == "300s"           # dns.negative_ttl: no SOA here
    assert r.hosts("missing.test") == []


def test_null_mx(mailroom, dnsmasq):
    dns = dnsmasq(null_mx=["nomail.test"])
    r = resolve(mailroom, "nomail.test", resolver=dns.address)
    assert r.rc == 1, r
    s = r.status("nomail.test")
    assert s["status"] == "nullmx", r
    assert "RFC 7505" in s["reason"]
    assert r.hosts("nomail.test") == []


def test_null_mx_beside_real_mx_is_ignored(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("mixed.test", "mx.mixed.test", 10)],
                  null_mx=["mixed.test"],
                  hosts=[("mx.mixed.test", "127.0.0.2")])
    r = resolve(mailroom, "mixed.test", resolver=dns.address)
    assert r.rc == 0, r
    assert [h["mx"] for h in r.hosts("mixed.test")] == ["mx.mixed.test"]


def test_mx_host_without_address_alone_is_temporary(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("ghost.test", "nowhere.ghost.test", 10)])
    r = resolve(mailroom, "ghost.test", resolver=dns.address)
    assert r.rc == 1, r
    s = r.status("ghost.test")
    assert s["status"] == "temp", r
    assert "nowhere.ghost.test" in s["reason"]
    assert "NXDOMAIN" in s["reason"]
    assert s["ttl"] == "5s"
    (h,) = r.hosts("ghost.test")
    assert h["status"] == "noaddr"
    assert "addrs" not in h


def test_mx_host_without_address_beside_a_good_one(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("half.test", "nowhere.half.test", 10),
                      ("half.test", "mx.half.test", 20)],
                  hosts=[("mx.half.test", "127.0.0.3")])
    r = resolve(mailroom, "half.test", resolver=dns.address)
    assert r.rc == 0, r
    first, second = r.hosts("half.test")
    assert first["mx"] == "nowhere.half.test"
    assert first["status"] == "noaddr"
    assert second["mx"] == "mx.half.test"
    assert second["addrs"] == "127.0.0.3"
    assert "status" not in second


def test_ipv4_before_ipv6(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("six.test", "dual.six.test", 10),
                      ("six.test", "v6only.six.test", 20)],
                  hosts=[("dual.six.test", "::1"),
                         ("dual.six.test", "127.0.0.2"),
                         ("v6only.six.test", "2001:db8::25")])
    r = resolve(mailroom, "six.test", resolver=dns.address)
    assert r.rc == 0, r
    dual, v6 = r.hosts("six.test")
    assert dual["addrs"] == "127.0.0.2,::1", r
    assert v6["addrs"] == "2001:db8::25"


def test_several_domains_and_a_shared_lookup(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("a.test", "mx.a.test", 10)],
                  hosts=[("mx.a.test", "127.0.0.2")])
    r = resolve(mailroom, "a.test", "b.test", "A.TEST.",
                resolver=dns.address)
    assert r.rc == 1, r                 # b.test does not exist
    assert [l["domain"] for l in r.lines] == ["a.test", "b.test", "A.TEST."]
    assert r.hosts("A.TEST.")[0]["mx"] == "mx.a.test"


def test_invalid_domain(mailroom):
    # Refused before any query: the resolver is a closed port.
    dead = f"127.0.0.1:{free_port('127.0.0.1', socket.SOCK_DGRAM)}"
    r = resolve(mailroom, "bad..test", resolver=dead)
    assert r.rc == 1, r
    assert r.status("bad..test")["status"] == "nxdomain"
    assert "not a valid domain name" in r.status("bad..test")["reason"]


# ---- static routes -------------------------------------------------------

def test_route_to_ipv4_literal_needs_no_dns(mailroom):
    # The resolver is a closed port: a literal route must not ask it.
    dead = f"127.0.0.1:{free_port('127.0.0.1', socket.SOCK_DGRAM)}"
    r = resolve(mailroom, "--route", "lit.test=127.0.0.9:2525",
                "--route", "lit6.test=[::1]:2526", "lit.test", "lit6.test",
                resolver=dead)
    assert r.rc == 0, r
    (h,) = r.hosts("lit.test")
    assert (h["mx"], h["port"], h["addrs"], h["routed"]) == \
        ("127.0.0.9", "2525", "127.0.0.9", "yes")
    assert h["ttl"] == "none"
    (h,) = r.hosts("lit6.test")
    assert (h["mx"], h["port"], h["addrs"]) == ("::1", "2526", "::1")


def test_route_to_name(mailroom, dnsmasq):
    dns = dnsmasq(mx=[("routed.test", "mx.routed.test", 10)],
                  hosts=[("relay.test", "127.0.0.7"),
                         ("mx.routed.test", "127.0.0.2")])
    r = resolve(mailroom, "--route", "routed.test=relay.test:2525",
                "routed.test", resolver=dns.address)
    assert r.rc == 0, r
    (h,) = r.hosts("routed.test")
    assert (h["mx"], h["pref"], h["port"], h["addrs"], h["routed"]) == \
        ("relay.test", "0", "2525", "127.0.0.7", "yes")


def test_route_to_name_without_address(mailroom, dnsmasq):
    dns = dnsmasq()
    r = resolve(mailroom, "--route", "x.test=norelay.test", "x.test",
                resolver=dns.address)
    assert r.rc == 1, r
    s = r.status("x.test")
    assert s["status"] == "temp"
    assert "norelay.test" in s["reason"] and "static route" in s["reason"]


def test_star_route_and_precedence(mailroom, dnsmasq):
    dns = dnsmasq(hosts=[("relay.test", "127.0.0.7")])
    r = resolve(mailroom,
                "--route", "*=relay.test:2525",
                "--route", ".sub.test=127.0.0.8",
                "--route", "exact.sub.test=[::1]:26",
                "anything.example", "a.sub.test", "exact.sub.test",
                "sub.test", resolver=dns.address)
    assert r.rc == 0, r
    got = {d: (r.hosts(d)[0]["mx"], r.hosts(d)[0]["port"])
           for d in ("anything.example", "a.sub.test", "exact.sub.test",
                     "sub.test")}
    assert got == {"anything.example": ("relay.test", "2525"),
                   "a.sub.test": ("127.0.0.8", "25"),
                   "exact.sub.test": ("::1", "26"),
                   "sub.test": ("relay.test", "2525")}


# ---- resolvers that fail -------------------------------------------------

def test_resolver_on_closed_port_is_temporary(mailroom):
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    r = resolve(mailroom, "-o", "dns.timeout=200ms", "-o", "dns.tries=2",
                "x.test", resolver=f"127.0.0.1:{port}")
    assert r.rc == 1, r
    s = r.status("x.test")
    assert s["status"] == "temp", r
    assert s["reason"] == ("MX lookup for x.test: no DNS server answered "
                           "(unreachable, or SERVFAIL or REFUSED)")
    assert r.elapsed < 5, r


def test_resolver_that_never_answers_times_out(mailroom):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        # c-ares doubles the timeout on each round: 200 + 400 ms.
        r = resolve(mailroom, "-o", "dns.timeout=200ms", "-o",
                    "dns.tries=2", "x.test", "y.test",
                    resolver=f"127.0.0.1:{port}")
    assert r.rc == 1, r
    for d in ("x.test", "y.test"):
        s = r.status(d)
        assert s["status"] == "temp", r
        assert "timeout" in s["reason"]
        assert s["ttl"] == "5s"
    assert 0.5 <= r.elapsed < 3, r


# ---- a scripted server for what dnsmasq cannot say ------------------------

class Scripted:
    """A dnslib DNS server on a loopback UDP port answering from a table."""

    def __init__(self):
        from dnslib import (AAAA, MX, QTYPE, RCODE, RR, SOA, A)
        from dnslib.server import BaseResolver, DNSServer

        soa = lambda ttl, minimum: RR(  # noqa: E731
            "test", QTYPE.SOA, ttl=ttl,
            rdata=SOA("ns.test", "hostmaster.test",
                      (1, 3600, 600, 86400, minimum)))

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                qtype = QTYPE[request.q.qtype]
                if name == "soa-nx.test":
                    reply.header.rcode = RCODE.NXDOMAIN
                    reply.add_auth(soa(3600, 42))
                elif name == "nodata.test":
                    reply.add_auth(soa(77, 3600))   # MX, A, AAAA: NODATA
                elif name == "servfail.test":
                    reply.header.rcode = RCODE.SERVFAIL
                elif name == "refused.test":
                    reply.header.rcode = RCODE.REFUSED
                elif name == "ttl.test" and qtype == "MX":
                    reply.add_answer(RR(name, QTYPE.MX, ttl=120,
                                        rdata=MX("mx.ttl.test", 10)))
                elif name == "mx.ttl.test" and qtype == "A":
                    reply.add_answer(RR(name, QTYPE.A, ttl=90,
                                        rdata=A("127.0.0.2")))
                elif name == "many.test" and qtype == "MX":
                    for i in range(12):
                        reply.add_answer(RR(name, QTYPE.MX, ttl=300,
                                            rdata=MX(f"mx{i:02}.many.test",
                                                     i)))
                elif name.endswith(".many.test") and qtype == "A":
                    reply.add_answer(RR(name, QTYPE.A, ttl=300,
                                        rdata=A("127.0.0.3")))
                elif name.endswith(".test") and qtype in ("A", "AAAA",
                                                          "MX"):
                    reply.add_auth(soa(60, 60))
                else:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply

        self.port = free_port("127.0.0.1", socket.SOCK_DGRAM)
        self.address = f"127.0.0.1:{self.port}"
        self.server = DNSServer(Resolver(), port=self.port,
                                address="127.0.0.1")
        self.server.start_thread()

    def stop(self):
        self.server.stop()


@pytest.fixture
def scripted():
    pytest.importorskip("dnslib")
    s = Scripted()
    yield s
    s.stop()


def test_nxdomain_cached_for_soa_minimum(mailroom, scripted):
    r = resolve(mailroom, "soa-nx.test", resolver=scripted.address)
    assert r.rc == 1, r
    assert r.status("soa-nx.test")["status"] == "nxdomain"
    assert r.status("soa-nx.test")["ttl"] == "42s"  # min(3600, 42)
    # dns.negative_ttl caps what the zone asks for.
    r = resolve(mailroom, "-o", "dns.negative_ttl=10s", "soa-nx.test",
                resolver=scripted.address)
    assert r.status("soa-nx.test")["ttl"] == "10s"


def test_no_mx_and_no_address_is_permanent(mailroom, scripted):
    r = resolve(mailroom, "nodata.test", resolver=scripted.address)
    assert r.rc == 1, r
    s = r.status("nodata.test")
    assert s["status"] == "noaddr", r
    assert "no MX record and no address record" in s["reason"]
    assert s["ttl"] == "77s"            # min(SOA TTL 77, MINIMUM 3600)


@pytest.mark.parametrize("domain", ["servfail.test", "refused.test"])
def test_server_errors_are_temporary(mailroom, scripted, domain):
    # c-ares 1.18.1 retries, then reports SERVFAIL and REFUSED alike.  The
    # timeout leaves the scripted server (Python) time to answer on a
    # loaded 2-CPU machine: at 200 ms it once timed out instead.
    r = resolve(mailroom, "-o", "dns.timeout=1s", "-o", "dns.tries=2",
                domain, resolver=scripted.address)
    assert r.rc == 1, r
    s = r.status(domain)
    assert s["status"] == "temp", r
    assert "SERVFAIL or REFUSED" in s["reason"]
    assert s["ttl"] == "5s"
    assert r.elapsed < 3, r


def test_positive_ttl_is_lowest_record_ttl_clamped(mailroom, scripted):
    r = resolve(mailroom, "ttl.test", resolver=scripted.address)
    assert r.rc == 0, r
    assert r.hosts("ttl.test")[0]["ttl"] == "90s"   # min(MX 120, A 90)
    r = resolve(mailroom, "-o", "dns.min_ttl=100s", "ttl.test",
                resolver=scripted.address)
    assert r.hosts("ttl.test")[0]["ttl"] == "100s"
    r = resolve(mailroom, "-o", "dns.max_ttl=1s", "-o", "dns.min_ttl=0",
                "ttl.test", resolver=scripted.address)
    assert r.hosts("ttl.test")[0]["ttl"] == "1s"


def test_at_most_ten_mx_hosts(mailroom, scripted):
    r = resolve(mailroom, "many.test", resolver=scripted.address)
    assert r.rc == 0, r
    names = [h["mx"] for h in r.hosts("many.test")]
    assert names == [f"mx{i:02}.many.test" for i in range(10)], r


# ---- usage ---------------------------------------------------------------

def test_usage_errors(mailroom):
    r = resolve(mailroom)
    assert r.rc == EX_USAGE, r
    r = resolve(mailroom, "--bogus", "x.test")
    assert r.rc == EX_USAGE, r
    r = resolve(mailroom, "-o", "nonsense", "x.test")
    assert r.rc == EX_USAGE, r
    r = resolve(mailroom, "--help")
    assert r.rc == 0 and "usage: mailroom resolve" in r.out, r


@pytest.mark.parametrize("args,words", [
    (["--route", "x.test=[::1"], "dns.route"),
    (["--route", "x.test"], "DOMAIN=HOST"),
    (["--resolver", "dns.example:53"], "dns.resolver"),
    (["--resolver", "127.0.0.1:0"], "dns.resolver"),
    (["-o", "dns.tries=0"], "dns.tries"),
])
def test_config_errors(mailroom, args, words):
    r = resolve(mailroom, *args, "x.test")
    assert r.rc == EX_CONFIG, r
    assert words in r.err, r
