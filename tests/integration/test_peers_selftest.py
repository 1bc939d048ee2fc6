"""Self-test of the SMTP peer fixtures (peers.py), without mailroom.

Each misbehaviour of AioPeer and the dump parsing of SmtpSink are checked
with a plain client (smtplib or swaks) so that a failing send test can be
blamed on mailroom, not on its peers.  The dnsmasq fixture is checked with
dnslib.  Needs no mailroom binary.
"""
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from peers import common_free_port

MSG = (b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: hi\r\n\r\n"
       b"..leading dot\r\nbody\r\n")


def smtp(peer, timeout=10):
    return smtplib.SMTP(peer.host, peer.port, timeout=timeout)


def test_aio_peer_stores_message_byte_exact(aio_peer):
    peer = aio_peer(host="127.0.0.2")
    with smtp(peer) as c:
        c.ehlo("client.test")
        assert c.has_extn("pipelining")
        assert c.has_extn("8bitmime")
        c.sendmail("a@src.test", ["b@dst.test", "c@dst.test"], MSG)
    [m] = peer.messages
    assert m.mail_from == "a@src.test"
    assert m.rcpt_tos == ["b@dst.test", "c@dst.test"]
    # smtplib stuffs the leading dot; the peer unstuffs it.
    assert m.data == MSG
    assert m.host == peer.address and m.tls is False
    assert m.message()["Subject"] == "hi"
    c = peer.counters
    assert (c["connections"], c["transactions"], c["mail_cmds"],
            c["rcpt_cmds"]) == (1, 1, 1, 2)


def test_aio_peer_without_pipelining_and_pipelined_counter(aio_peer):
    peer = aio_peer(host="127.0.0.2", pipelining=False)
    with smtp(peer) as c:
        c.ehlo("client.test")
        assert not c.has_extn("pipelining")
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert peer.pipelined == 0
    # A client that sends MAIL, RCPT and DATA in one write is noticed.
    with socket.create_connection((peer.host, peer.port), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO x\r\n")
        while f.readline()[3:4] == b"-":
            pass
        s.sendall(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\n"
                  b"DATA\r\n")
        for _ in range(3):
            f.readline()
        s.sendall(b"Subject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250")
    assert peer.pipelined == 2
    assert len(peer.messages) == 2


def test_aio_peer_421_greeting_budget(aio_peer):
    peer = aio_peer(host="127.0.0.2", greet_421=2)
    for _ in range(2):
        with pytest.raises(smtplib.SMTPConnectError) as e:
            smtp(peer)
        assert e.value.smtp_code == 421
    with smtp(peer) as c:
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert peer.greetings_refused == 2 and peer.connections == 3
    assert len(peer.messages) == 1


def test_aio_peer_rcpt_tempfail_once_then_accept(aio_peer):
    peer = aio_peer(host="127.0.0.2", rcpt_tempfail=["b@dst.test"])
    with smtp(peer) as c:
        refused = c.sendmail("a@src.test", ["b@dst.test", "c@dst.test"], MSG)
        assert refused["b@dst.test"][0] == 451
        assert c.sendmail("a@src.test", ["b@dst.test"], MSG) == {}
    assert [m.rcpt_tos for m in peer.messages] == [["c@dst.test"],
                                                   ["b@dst.test"]]
    assert peer.rcpt_tempfailed == 1


def test_aio_peer_rcpt_and_data_reject(aio_peer):
    peer = aio_peer(host="127.0.0.2", rcpt_reject=["bad@dst.test"],
                    data_reject=["filtered@dst.test"])
    with smtp(peer) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail("a@src.test", ["bad@dst.test"], MSG)
        assert e.value.recipients["bad@dst.test"][0] == 550
        c.rset()
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("a@src.test", ["filtered@dst.test"], MSG)
        assert e.value.smtp_code == 550
        assert b"5.7.1" in e.value.smtp_error
    assert peer.messages == []
    [r] = peer.refused
    assert r.rcpt_tos == ["filtered@dst.test"] and r.data == MSG


def test_aio_peer_data_tempfail_then_accept(aio_peer):
    peer = aio_peer(host="127.0.0.2", data_tempfail={"b@dst.test": 1})
    with smtp(peer) as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("a@src.test", ["b@dst.test"], MSG)
        assert e.value.smtp_code == 451
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert len(peer.tempfailed) == 1 and len(peer.messages) == 1


def test_aio_peer_drops_in_data(aio_peer):
    peer = aio_peer(host="127.0.0.2", drop_in_data=1)
    c = smtp(peer)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        c.sendmail("a@src.test", ["b@dst.test"], MSG + b"more\r\n" * 1000)
    c.close()
    assert peer.drops == 1 and peer.messages == []
    # The rest of the body is never read as commands.
    assert peer.pipelined == 0 and peer.mail_cmds == 1
    with smtp(peer) as c:
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert len(peer.messages) == 1


def test_aio_peer_slow_dot_reply_and_client_hangup(aio_peer):
    peer = aio_peer(host="127.0.0.2", data_delay=1.0, data_delay_times=1)
    c = smtp(peer, timeout=0.3)
    with pytest.raises((socket.timeout, smtplib.SMTPServerDisconnected)):
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    c.close()
    # The client hung up before the reply: the message is "late", not kept.
    from peers import wait_until
    assert wait_until(lambda: len(peer.late) == 1, 3)
    assert peer.messages == []
    start = time.monotonic()
    with smtp(peer) as c:
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert time.monotonic() - start < 1.0
    assert len(peer.messages) == 1


def test_aio_peer_slow_dot_reply_waits(aio_peer):
    peer = aio_peer(host="127.0.0.2", data_delay=0.5)
    start = time.monotonic()
    with smtp(peer) as c:
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    assert time.monotonic() - start >= 0.5
    assert len(peer.messages) == 1


def test_aio_peer_starttls_self_signed(aio_peer, tls_cert):
    cert, key = tls_cert("mx.tls.test", ips=["127.0.0.2"])
    peer = aio_peer(host="127.0.0.2", tls=(cert, key))
    # Unverified (tls_policy=may): works.
    with smtp(peer) as c:
        c.ehlo("x")
        assert c.has_extn("starttls")
        c.starttls(context=ssl._create_unverified_context())
        c.sendmail("a@src.test", ["b@dst.test"], MSG)
    # Verified against the system CAs: fails, nothing sent in clear.
    with smtp(peer) as c:
        with pytest.raises(ssl.SSLCertVerificationError):
            c.starttls(context=ssl.create_default_context())
    # Verified with the certificate as CA and the right name: works.
    ctx = ssl.create_default_context(cafile=str(cert))
    with smtplib.SMTP(peer.host, peer.port, timeout=10) as c:
        c._host = "mx.tls.test"
        c.starttls(context=ctx)
        c.sendmail("a@src.test", ["c@dst.test"], MSG)
    assert [m.tls for m in peer.messages] == [True, True]
    assert peer.starttls == 3
    # Stopping right after TLS sessions close is quick (was a hang once).
    start = time.monotonic()
    peer.stop()
    assert time.monotonic() - start < 3


def test_aio_peer_with_swaks_pipelining(aio_peer):
    peer = aio_peer(host="127.0.0.3")
    out = subprocess.run(
        ["swaks", "--server", peer.address, "--from", "a@src.test",
         "--to", "b@dst.test,c@dst.test", "--pipeline",
         "--header", "Subject: swaks"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    [m] = peer.messages
    assert m.rcpt_tos == ["b@dst.test", "c@dst.test"]
    assert peer.pipelined >= 1


def test_smtp_sink_dump_parsed(smtp_sink):
    sink = smtp_sink(host="127.0.0.2")
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as c:
        for i in range(20):
            c.sendmail("a@src.test", [f"u{i}@dst.test", f"v{i}@dst.test"],
                       MSG.replace(b"hi", b"hi %d" % i))
    msgs = sink.messages(expect=20)
    assert len(msgs) == 20
    by_subject = {m.message()["Subject"]: m for m in msgs}
    m = by_subject["hi 7"]
    assert m.mail_from == "a@src.test"
    assert m.rcpt_tos == ["u7@dst.test", "v7@dst.test"]
    # smtp-sink writes LF line ends and unstuffs dots.
    assert m.data == MSG.replace(b"hi", b"hi 7").replace(b"\r\n", b"\n")
    assert sink.proc.poll() is None


def test_smtp_sink_same_port_on_several_hosts(smtp_sink, aio_peer):
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    port = common_free_port(hosts)
    sinks = [smtp_sink(host=h, port=port) for h in hosts[:2]]
    aios = [aio_peer(host=h, port=port) for h in hosts[2:]]
    for h in hosts:
        with smtplib.SMTP(h, port, timeout=10) as c:
            c.sendmail("a@src.test", [f"x@{h}.test"], MSG)
    assert [len(s.messages(expect=1)) for s in sinks] == [1, 1]
    assert [len(p.messages) for p in aios] == [1, 1]


def test_dnsmasq_serves_mx_null_mx_a_and_nxdomain(dnsmasq):
    dnslib = pytest.importorskip("dnslib")
    d = dnsmasq(mx=[("d1.test", "mx1.test", 10), ("d1.test", "mx2.test", 20)],
                hosts=[("mx1.test", "127.0.0.2"), ("aonly.test", "127.0.0.9")],
                null_mx=["null.test"])

    def ask(name, qtype):
        q = dnslib.DNSRecord.question(name, qtype)
        return dnslib.DNSRecord.parse(q.send("127.0.0.1", d.port, timeout=3))

    mx = ask("d1.test", "MX")
    assert sorted((r.rdata.preference, str(r.rdata.label)) for r in mx.rr) \
        == [(10, "mx1.test."), (20, "mx2.test.")]
    [null] = ask("null.test", "MX").rr
    assert null.rdata.preference == 0 and str(null.rdata.label) == "."
    assert [str(r.rdata) for r in ask("aonly.test", "A").rr] == ["127.0.0.9"]
    assert ask("aonly.test", "MX").rr == []
    assert ask("nx.test", "MX").header.rcode == dnslib.RCODE.NXDOMAIN
