"""`mailroom send` against servers that break the rules or its limits:
more connections than the server allows (421 at the greeting), a 2xx to
DATA, a 421 in the middle of a pipelined group, an announced SIZE smaller
than the message, reply bytes that are not UTF-8, a STARTTLS that never
shakes hands, an address literal as the recipient's domain, and running
out of file descriptors.
"""
import subprocess

from peers import (TEMPLATE, assert_accounting_sane, common_free_port,
                   recipients, run_send)


def _emails(rows):
    return [row[0] for row in rows]


def test_421_beyond_the_servers_concurrency_is_not_a_host_failure(
        send, scripted_peer):
    # Two sessions are allowed; the others are refused at the greeting.
    # That is a limit, not a dead host: nobody is deferred or bounced.
    peer = scripted_peer(max_concurrent=2)
    rows = recipients(60)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.max_connections": 10,
                   "smtp.initial_connections": 5})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert r.count("delivered") == 60
    assert r.records("deferred") == [] and r.records("bounced") == []
    assert peer.counts["refused"] > 0


def test_2xx_to_data_is_a_protocol_error_not_a_delivery(send,
                                                        scripted_peer):
    peer = scripted_peer(replies={"DATA": "250 2.0.0 ok whatever"})
    rows = recipients(3)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert r.count("delivered") == 0
    assert peer.counts["bodies"] == 0
    for rcpt in _emails(rows):
        final = r.final(rcpt)
        assert final["type"] == "bounced"
        assert "retry limit reached" in final["reply"]
        assert all(d["dsn"] == "4.5.0" and "breaks the protocol" in
                   d["reply"] for d in r.records("deferred", rcpt))


def test_421_mid_pipeline_ends_the_session_and_retries(send,
                                                       scripted_peer):
    # The first RCPT is answered 421: the server is leaving.  Everything
    # pending is retried on a new session and delivered once.
    peer = scripted_peer(replies={"RCPT": ["421 4.3.2 going down"]})
    rows = recipients(4)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.max_connections": 1})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert r.count("delivered") == 4
    assert len(peer.messages) == 4
    assert [d["code"] for d in r.records("deferred")] == ["421"]


def test_announced_size_too_small_bounces_552_without_sending(
        send, scripted_peer):
    peer = scripted_peer(ehlo=("PIPELINING", "SIZE 100"))
    rows = recipients(2)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for rcpt in _emails(rows):
        final = r.final(rcpt)
        assert (final["type"], final["code"], final["dsn"]) == \
            ("bounced", "552", "5.3.4")
        assert "size limit of 100 bytes" in final["reply"]
    assert peer.counts["mail"] == 0


def test_reply_bytes_not_utf8_keep_json_accounting_valid(send,
                                                        scripted_peer):
    peer = scripted_peer(replies={"RCPT": "550 5.1.1 caf\xe9 \xff\xfe gone"})
    rows = recipients(1)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             accounting_format="json")
    assert r.rc == 0, r
    final = r.final(rows[0][0])
    assert final["type"] == "bounced"
    assert final["reply"] == "5.1.1 caf? ?? gone"
    assert peer.messages == []


def test_stalled_starttls_falls_back_to_plain_text(send, scripted_peer):
    # tls_policy=may: a handshake that never comes is a TLS failure, and
    # the next session goes without STARTTLS.
    peer = scripted_peer(ehlo=("PIPELINING", "STARTTLS"),
                         stall_starttls=True)
    rows = recipients(2)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.starttls_timeout": "500ms"})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert r.count("delivered") == 2
    assert r.records("deferred") == []


def test_address_literal_domain_goes_to_that_address(send, scripted_peer):
    port = common_free_port(["127.0.0.2"])
    peer = scripted_peer(host="127.0.0.2", port=port)
    rows = [["r0@[127.0.0.2]", "Literal"]]
    r = send(template=TEMPLATE, rows=rows, opts={"smtp.port": port})
    assert r.rc == 0, r
    final = r.final("r0@[127.0.0.2]")
    assert final["type"] == "delivered", final
    assert final["host"] == f"127.0.0.2:{port}"
    assert peer.messages[0]["rcpts"] == ["r0@[127.0.0.2]"]


def test_out_of_file_descriptors_is_a_temporary_failure(mailroom, tmp_path,
                                                        scripted_peer):
    # With too few descriptors to open a socket, each attempt fails, the
    # recipients are retried and finally bounced: no spinning, no hang.
    # The smallest limit at which the program starts at all (its streams,
    # event loop and files take a few) leaves none for a socket.
    peer = scripted_peer()
    rows = recipients(3)
    for n in range(5, 12):
        r = run_send(["prlimit", f"--nofile={n}:{n}", "--", mailroom],
                     tmp_path / f"run{n}", template=TEMPLATE, rows=rows,
                     routes={"*": peer.address}, timeout=30)
        if r.rc == 0:
            break
        assert "Too many open files" in r.stderr, r
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for rcpt in _emails(rows):
        final = r.final(rcpt)
        assert final["type"] == "bounced", final
        assert "Too many open files" in final["reply"]
    assert peer.counts["connections"] == 0
