"""`mailroom send` routing through DNS (dnsmasq) and static routes.

MX preference order; a first MX that refuses connections (nothing listens)
so the second is used; every MX refusing (4.4.1, then the retry limit);
NXDOMAIN (5.1.2) and null MX (5.1.10) bounced at once without retries; a
domain with only an A record (implicit MX); --route with `*`, a
`.subdomain` pattern and an exact domain, which bypass DNS; a busy
domain's MX looked up again before its answer expires.
"""
import re
import socket

from peers import (TEMPLATE, assert_accounting_sane, common_free_port,
                   recipients)


def _emails(rows):
    return [row[0] for row in rows]


def test_lowest_preference_mx_is_used(send, aio_peer, dnsmasq):
    port = common_free_port(["127.0.0.2", "127.0.0.3"])
    primary = aio_peer(host="127.0.0.2", port=port)
    backup = aio_peer(host="127.0.0.3", port=port)
    dns = dnsmasq(mx=[("x.test", "backup.test", 20),
                      ("x.test", "primary.test", 10)],
                  hosts=[("primary.test", "127.0.0.2"),
                         ("backup.test", "127.0.0.3")])
    rows = recipients(4)
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert len(primary.messages) == 4 and backup.connections == 0
    for rcpt in _emails(rows):
        assert r.final(rcpt)["mx"].rstrip(".") == "primary.test"


def test_first_mx_refuses_connections_second_mx_used(send, aio_peer,
                                                     dnsmasq):
    # Nothing listens on 127.0.0.6:port: connections there are refused.
    port = common_free_port(["127.0.0.6", "127.0.0.7"])
    peer = aio_peer(host="127.0.0.7", port=port)
    dns = dnsmasq(mx=[("x.test", "mxa.test", 10), ("x.test", "mxb.test", 20)],
                  hosts=[("mxa.test", "127.0.0.6"), ("mxb.test", "127.0.0.7")])
    rows = recipients(3)
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for rcpt in _emails(rows):
        final = r.final(rcpt)
        assert final["type"] == "delivered", final
        assert final["mx"].rstrip(".") == "mxb.test"
        assert final["host"] == f"127.0.0.7:{port}"
    assert sorted(m.rcpt_tos[0] for m in peer.messages) == \
        sorted(_emails(rows))


def test_every_mx_refusing_is_deferred_4_4_1_then_bounced(send, dnsmasq):
    port = common_free_port(["127.0.0.6"])
    dns = dnsmasq(mx=[("x.test", "mxa.test", 10)],
                  hosts=[("mxa.test", "127.0.0.6")])
    rows = recipients(1)
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    deferred = r.records("deferred", rows[0][0])
    assert 1 <= len(deferred) <= 3
    assert (deferred[0]["code"], deferred[0]["dsn"]) == ("", "4.4.1")
    for d in deferred:
        assert d["code"] == "" and d["dsn"].startswith("4."), d
    final = r.final(rows[0][0])
    assert final["type"] == "bounced"
    assert final["reply"].startswith("retry limit reached"), final
    assert r.duration < 20


def test_nxdomain_bounces_5_1_2_without_retry(send, aio_peer, dnsmasq):
    port = common_free_port(["127.0.0.2"])
    peer = aio_peer(host="127.0.0.2", port=port)
    dns = dnsmasq(mx=[("good.test", "mx.test", 10)],
                  hosts=[("mx.test", "127.0.0.2")])
    rows = [["ok@good.test", "Ok"], ["lost@nx-domain.test", "Lost"]]
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    final = r.final("lost@nx-domain.test")
    assert final["type"] == "bounced"
    assert (final["code"], final["dsn"]) == ("", "5.1.2")
    assert re.search(r"not exist|no such domain|nxdomain|non-?existent",
                     final["reply"], re.I), final["reply"]
    assert final["domain"] == "nx-domain.test"
    assert r.records("deferred", "lost@nx-domain.test") == []
    assert r.final("ok@good.test")["type"] == "delivered"
    assert [m.rcpt_tos for m in peer.messages] == [["ok@good.test"]]
    assert r.count("bounced") == 1 and r.count("delivered") == 1


def test_null_mx_bounces_5_1_10_without_retry(send, aio_peer, dnsmasq):
    port = common_free_port(["127.0.0.2"])
    peer = aio_peer(host="127.0.0.2", port=port)
    dns = dnsmasq(mx=[("good.test", "mx.test", 10)],
                  hosts=[("mx.test", "127.0.0.2")],
                  null_mx=["nomail.test"])
    rows = [["ok@good.test", "Ok"], ["no@nomail.test", "No"]]
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    final = r.final("no@nomail.test")
    assert final["type"] == "bounced"
    assert (final["code"], final["dsn"]) == ("", "5.1.10")
    assert r.records("deferred", "no@nomail.test") == []
    assert [m.rcpt_tos for m in peer.messages] == [["ok@good.test"]]


def test_a_record_only_is_an_implicit_mx(send, aio_peer, dnsmasq):
    port = common_free_port(["127.0.0.8"])
    peer = aio_peer(host="127.0.0.8", port=port)
    dns = dnsmasq(hosts=[("aonly.test", "127.0.0.8")])
    rows = recipients(2, domain="aonly.test")
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for rcpt in _emails(rows):
        final = r.final(rcpt)
        assert final["type"] == "delivered", final
        assert final["mx"].rstrip(".") == "aonly.test"
        assert final["host"] == f"127.0.0.8:{port}"
    assert len(peer.messages) == 2


def test_routes_bypass_dns(send, aio_peer):
    sub = aio_peer(host="127.0.0.2")
    exact = aio_peer(host="127.0.0.3")
    other = aio_peer(host="127.0.0.4")
    # A resolver that never answers: any DNS lookup would fail or hang.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        rows = [["a@x.sub.test", "A"], ["b@deep.y.sub.test", "B"],
                ["c@exact.test", "C"], ["d@anything.example", "D"]]
        r = send(template=TEMPLATE, rows=rows,
                 resolver=f"127.0.0.1:{dead_port}",
                 routes=[(".sub.test", sub.address),
                         ("exact.test", exact.address),
                         ("*", other.address)])
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert sorted(m.rcpt_tos[0] for m in sub.messages) == \
        ["a@x.sub.test", "b@deep.y.sub.test"]
    assert [m.rcpt_tos for m in exact.messages] == [["c@exact.test"]]
    assert [m.rcpt_tos for m in other.messages] == [["d@anything.example"]]
    assert r.final("c@exact.test")["host"] == exact.address


def test_busy_domain_is_looked_up_again_before_expiry(send, aio_peer,
                                                      dnsmasq):
    # dnsmasq gives its records TTL 0; dns.min_ttl makes that 1 s.  The
    # peer takes 0.3 s a message on one connection, so the campaign lasts
    # longer than the TTL: the MX is asked again while delivery goes on.
    port = common_free_port(["127.0.0.9"])
    peer = aio_peer(host="127.0.0.9", port=port, data_delay=0.3)
    dns = dnsmasq(mx=[("busy.test", "mx.busy.test", 10)],
                  hosts=[("mx.busy.test", "127.0.0.9")], log_queries=True)
    rows = recipients(8, domain="busy.test")
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port, "dns.min_ttl": "1s",
                   "smtp.max_connections": 1})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert len(peer.messages) == 8
    assert r.records("deferred") == []
    assert dns.queries("MX", "busy.test") >= 2
