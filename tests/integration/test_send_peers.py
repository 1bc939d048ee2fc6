"""`mailroom send` against misbehaving SMTP peers (AioPeer).

421 at the greeting (retry limit, or a second MX that works), 451 at RCPT
or after the final dot then success, 550 at RCPT or after the dot (bounce,
forensics file), connection dropped in the middle of DATA (retried, never
delivered twice), a final reply slower than smtp.data_done_timeout, no
PIPELINING (one command at a time), STARTTLS with a self-signed certificate
under each tls_policy, max_age and max_connections.  Retries are quick
(peers.QUICK_OPTS: 200 ms base, 3 attempts).
"""
import email
import email.policy
import re

import pytest

from peers import (ALWAYS, SENDER, TEMPLATE, assert_accounting_sane,
                   common_free_port, forensics_file, recipients, wait_until)


def _emails(rows):
    return [row[0] for row in rows]


def _once_each(peer, rows):
    """Every recipient of rows is in exactly one accepted message."""
    by = peer.received_by_rcpt()
    counts = {e: len(by.get(e.lower(), [])) for e in _emails(rows)}
    assert counts == {e: 1 for e in _emails(rows)}, counts
    assert len(by) == len(rows), sorted(by)


def _assert_retry_limit_bounce(r, rcpt, max_attempts=3):
    final = r.final(rcpt)
    assert final["type"] == "bounced", final
    assert final["reply"].startswith("retry limit reached"), final
    assert 1 <= int(final["attempt"]) <= max_attempts
    deferred = r.records("deferred", rcpt)
    assert 1 <= len(deferred) <= max_attempts, deferred
    return deferred


# ------------------------------------------------------------- 421 greeting

def test_421_greeting_deferred_then_bounced_at_retry_limit(send, aio_peer):
    peer = aio_peer(host="127.0.0.2", greet_421=ALWAYS)
    rows = recipients(2)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for rcpt in _emails(rows):
        deferred = _assert_retry_limit_bounce(r, rcpt)
        assert any(d["code"] == "421" and d["dsn"] == "4.3.2"
                   for d in deferred), deferred
        assert all(d["dsn"].startswith("4.") for d in deferred), deferred
    assert peer.messages == [] and peer.mail_cmds == 0
    assert peer.greetings_refused >= 1
    assert r.count("delivered") == 0 and r.count("bounced") == 2
    assert r.count("deferrals") >= 2
    assert r.duration < 20


def test_421_greeting_on_first_mx_second_mx_delivers(send, aio_peer,
                                                     dnsmasq):
    port = common_free_port(["127.0.0.2", "127.0.0.3"])
    bad = aio_peer(host="127.0.0.2", port=port, greet_421=ALWAYS)
    good = aio_peer(host="127.0.0.3", port=port)
    dns = dnsmasq(mx=[("x.test", "mxa.test", 10), ("x.test", "mxb.test", 20)],
                  hosts=[("mxa.test", "127.0.0.2"), ("mxb.test", "127.0.0.3")])
    rows = recipients(3)
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for rcpt in _emails(rows):
        final = r.final(rcpt)
        assert final["type"] == "delivered", final
        assert final["mx"].rstrip(".") == "mxb.test"
        assert final["host"] == f"127.0.0.3:{port}"
    _once_each(good, rows)
    assert bad.greetings_refused >= 1 and bad.messages == []


# ------------------------------------------------------------- 451 then 250

def test_451_at_rcpt_once_then_delivered_exactly_once(send, aio_peer):
    rows = recipients(6)
    grey = _emails(rows)[1:3]
    peer = aio_peer(host="127.0.0.2", rcpt_tempfail=grey)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    _once_each(peer, rows)
    for rcpt in _emails(rows):
        deferred = r.records("deferred", rcpt)
        final = r.final(rcpt)
        assert final["type"] == "delivered", final
        if rcpt in grey:
            assert len(deferred) == 1, deferred
            d = deferred[0]
            assert (d["code"], d["dsn"], d["attempt"]) == ("451", "4.7.1",
                                                          "1")
            assert "greylisted" in d["reply"]
            assert final["attempt"] == "2"
        else:
            assert deferred == []
            assert final["attempt"] == "1"
    assert peer.rcpt_tempfailed == 2
    assert r.count("delivered") == 6 and r.count("deferrals") == 2


def test_451_after_final_dot_once_then_delivered(send, aio_peer):
    rows = recipients(3)
    peer = aio_peer(host="127.0.0.2", data_tempfail=[rows[0][0]])
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    _once_each(peer, rows)
    [d] = r.records("deferred", rows[0][0])
    assert (d["code"], d["dsn"]) == ("451", "4.3.0")
    assert r.final(rows[0][0])["type"] == "delivered"
    assert len(peer.tempfailed) == 1
    assert r.count("deferrals") == 1


# ------------------------------------------------------------- 550

def _check_forensics(r, rec, row):
    assert rec["forensics"], rec
    path = forensics_file(r, rec)
    assert path.name.endswith(".eml"), path
    assert path.parent.resolve() == r.forensics_dir.resolve()
    assert re.search(rf"(?<!\d){rec['line']}(?!\d)", path.name), path.name
    assert path.is_file(), path
    data = path.read_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == f"Hello {row[1]}"
    assert msg["To"].addresses[0].addr_spec == row[0]
    assert msg["Message-ID"] and msg["Date"]
    body = msg.get_body().get_content()
    assert body.replace("\r\n", "\n") == \
        f"Hi {row[1]}, this message is for {row[0]}.\n"
    return data


def test_550_at_rcpt_bounces_with_forensics(send, aio_peer):
    rows = recipients(5)
    bad_rows = [rows[1], rows[3]]
    peer = aio_peer(host="127.0.0.2", rcpt_reject=_emails(bad_rows))
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    for n, row in enumerate(rows, 2):
        final = r.final(row[0])
        assert int(final["line"]) == n
        if row in bad_rows:
            assert final["type"] == "bounced", final
            assert (final["code"], final["dsn"]) == ("550", "5.1.1")
            assert "User unknown" in final["reply"]
            assert r.records("deferred", row[0]) == []
            _check_forensics(r, final, row)
        else:
            assert final["type"] == "delivered", final
            assert final["forensics"] == ""
    good = [row for row in rows if row not in bad_rows]
    _once_each(peer, good)
    assert r.count("bounced") == 2 and r.count("delivered") == 3
    assert r.count("deferrals") == 0


def test_550_after_final_dot_bounces_with_whole_message_kept(send,
                                                             aio_peer):
    rows = recipients(3)
    peer = aio_peer(host="127.0.0.2", data_reject=[rows[2][0]])
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    final = r.final(rows[2][0])
    assert final["type"] == "bounced"
    assert (final["code"], final["dsn"]) == ("550", "5.7.1")
    data = _check_forensics(r, final, rows[2])
    [refused] = peer.refused
    # The kept file holds the whole message the peer refused.
    norm = refused.data.replace(b"\r\n", b"\n")
    assert norm in data.replace(b"\r\n", b"\n")
    _once_each(peer, rows[:2])


# ------------------------------------------------------------- dropped DATA

def test_dropped_in_data_once_then_delivered_once(send, aio_peer):
    rows = recipients(1)
    peer = aio_peer(host="127.0.0.2", drop_in_data=1)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    [d] = r.records("deferred", rows[0][0])
    assert (d["code"], d["dsn"], d["attempt"]) == ("", "4.4.2", "1")
    final = r.final(rows[0][0])
    assert final["type"] == "delivered" and final["attempt"] == "2"
    assert peer.drops == 1
    _once_each(peer, rows)
    assert r.count("deferrals") == 1


def test_dropped_in_data_with_several_recipients_none_lost_none_twice(
        send, aio_peer):
    rows = recipients(8)
    peer = aio_peer(host="127.0.0.2", drop_in_data=2)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.max_connections": 1})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert peer.drops == 2
    _once_each(peer, rows)
    deferred = r.records("deferred")
    assert 2 <= len(deferred) <= 2 * len(rows), deferred
    assert sum(d["dsn"] == "4.4.2" for d in deferred) >= 2, deferred
    assert all(d["dsn"].startswith("4.") for d in deferred), deferred
    assert r.count("delivered") == 8


def test_dropped_in_data_always_bounces_at_retry_limit(send, aio_peer):
    rows = recipients(1)
    peer = aio_peer(host="127.0.0.2", drop_in_data=ALWAYS)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    deferred = _assert_retry_limit_bounce(r, rows[0][0])
    assert deferred[0]["dsn"] == "4.4.2", deferred
    assert all(d["dsn"].startswith("4.") for d in deferred), deferred
    assert peer.messages == []
    assert 1 <= peer.drops <= 3


# ------------------------------------------------------------- slow peer

def test_final_reply_slower_than_data_done_timeout_deferred(send, aio_peer):
    rows = recipients(1)
    peer = aio_peer(host="127.0.0.2", data_delay=5.0, data_delay_times=1)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.data_done_timeout": "1s"})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    [d] = r.records("deferred", rows[0][0])
    assert (d["code"], d["dsn"]) == ("", "4.4.2"), d
    assert r.final(rows[0][0])["type"] == "delivered"
    # mailroom hung up on the slow transaction: the peer never replied to
    # it, so the retry is the only message kept.
    assert wait_until(lambda: len(peer.late) == 1, 3)
    _once_each(peer, rows)
    assert r.duration < 5.0


def test_final_reply_slow_but_within_timeout_delivered(send, aio_peer):
    rows = recipients(2)
    peer = aio_peer(host="127.0.0.2", data_delay=0.5)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.data_done_timeout": "3s"})
    assert r.rc == 0, r
    assert r.records("deferred") == []
    _once_each(peer, rows)


# ------------------------------------------------------------- PIPELINING

def test_no_pipelining_one_command_at_a_time(send, aio_peer):
    rows = recipients(10)
    peer = aio_peer(host="127.0.0.2", pipelining=False)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert peer.pipelined == 0
    assert peer.mail_cmds == 10 and peer.rcpt_cmds == 10


@pytest.mark.parametrize("setting,pipelines", [("yes", True), ("no", False)])
def test_pipelining_setting_with_a_pipelining_peer(send, aio_peer, setting,
                                                   pipelines):
    rows = recipients(10)
    peer = aio_peer(host="127.0.0.2", pipelining=True)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.pipelining": setting, "smtp.max_connections": 1})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert (peer.pipelined > 0) == pipelines, peer.counters


# ------------------------------------------------------------- STARTTLS

def test_starttls_self_signed_used_under_policy_may(send, aio_peer,
                                                    tls_cert):
    peer = aio_peer(host="127.0.0.2", tls=tls_cert("mx.tls.test"))
    rows = recipients(3)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.tls_policy": "may"})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert all(m.tls for m in peer.messages)
    assert peer.starttls >= 1


def test_starttls_self_signed_under_policy_verify_never_in_clear(
        send, aio_peer, tls_cert):
    peer = aio_peer(host="127.0.0.2", tls=tls_cert("mx.tls.test"))
    rows = recipients(2)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.tls_policy": "verify"})
    assert r.rc == 0, r
    assert_accounting_sane(r, recipients=_emails(rows))
    assert r.records("delivered") == []
    for rcpt in _emails(rows):
        assert r.final(rcpt)["type"] == "bounced"
    assert peer.messages == [] and peer.mail_cmds == 0
    assert peer.transactions == 0


def test_starttls_policy_verify_with_trusted_certificate_delivers(
        send, aio_peer, tls_cert, dnsmasq):
    port = common_free_port(["127.0.0.2"])
    cert, key = tls_cert("mx.tls.test")
    peer = aio_peer(host="127.0.0.2", port=port, tls=(cert, key))
    dns = dnsmasq(mx=[("x.test", "mx.tls.test", 10)],
                  hosts=[("mx.tls.test", "127.0.0.2")])
    rows = recipients(2)
    r = send(template=TEMPLATE, rows=rows, resolver=dns.address,
             opts={"smtp.port": port, "smtp.tls_policy": "verify",
                   "smtp.tls_ca_file": str(cert)})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert all(m.tls for m in peer.messages)


def test_policy_encrypt_without_starttls_offered_not_delivered(send,
                                                               aio_peer):
    peer = aio_peer(host="127.0.0.2")
    rows = recipients(1)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.tls_policy": "encrypt"})
    assert r.rc == 0, r
    assert r.final(rows[0][0])["type"] == "bounced"
    assert peer.mail_cmds == 0 and peer.messages == []


def test_policy_encrypt_accepts_self_signed(send, aio_peer, tls_cert):
    peer = aio_peer(host="127.0.0.2", tls=tls_cert("mx.tls.test"))
    rows = recipients(1)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.tls_policy": "encrypt"})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert peer.messages[0].tls is True


def test_policy_none_does_not_start_tls(send, aio_peer, tls_cert):
    peer = aio_peer(host="127.0.0.2", tls=tls_cert("mx.tls.test"))
    rows = recipients(1)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.tls_policy": "none"})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert peer.messages[0].tls is False and peer.starttls == 0


# ------------------------------------------------------------- limits

def test_max_age_bounces_a_recipient_that_is_always_greylisted(send,
                                                               aio_peer):
    rows = recipients(1)
    peer = aio_peer(host="127.0.0.2", rcpt_tempfail={rows[0][0]: ALWAYS})
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"queue.max_attempts": 1000, "queue.max_age": "2s",
                   "queue.retry_max_interval": "300ms"})
    assert r.rc == 0, r
    final = r.final(rows[0][0])
    assert final["type"] == "bounced"
    assert final["reply"].startswith("retry limit reached"), final
    assert len(r.records("deferred", rows[0][0])) >= 2
    assert r.duration < 15
    assert peer.messages == []


def test_max_connections_is_respected(send, aio_peer):
    rows = recipients(40)
    peer = aio_peer(host="127.0.0.2", data_delay=0.05)
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             opts={"smtp.max_connections": 2})
    assert r.rc == 0, r
    _once_each(peer, rows)
    assert 1 <= peer.max_concurrent <= 2
    assert all(m.mail_from == SENDER for m in peer.messages)


def test_sigint_finishes_in_flight_then_exits_75(mailroom, tmp_path,
                                                 aio_peer):
    """The first SIGINT stops new transactions, lets those in flight end,
    prints the summary with the unfinished count and exits 75; every
    message the peer accepted is accounted as delivered, and nothing is
    accounted twice."""
    import signal
    import subprocess

    from peers import read_accounting, wait_until, write_list
    port = common_free_port(["127.0.0.2"])
    peer = aio_peer(host="127.0.0.2", port=port, data_delay=0.3)
    rows = recipients(60)
    (tmp_path / "t.eml").write_text(TEMPLATE)
    write_list(tmp_path / "l.csv", ("email", "name"), rows)
    acct = tmp_path / "acct.csv"
    proc = subprocess.Popen(
        [mailroom, "send", "--template", str(tmp_path / "t.eml"),
         "--list", str(tmp_path / "l.csv"), "--route",
         f"*=127.0.0.2:{port}", "--accounting", str(acct),
         "--no-progress", "-o", "smtp.max_connections=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len(peer.messages) >= 4, timeout=15)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, (out, err)
    assert "stopping" in err
    summary = dict(line.split(": ", 1) for line in out.splitlines()
                   if ": " in line)
    delivered = int(summary["delivered"])
    unfinished = int(summary["unfinished"])
    assert delivered + unfinished == 60 and unfinished > 0
    records = read_accounting(acct)
    finals = [r for r in records if r["type"] in ("delivered", "bounced")]
    assert len(finals) == len({r["recipient"] for r in finals}) == delivered
    accepted = {m.rcpt_tos[0] for m in peer.messages}
    assert accepted == {r["recipient"] for r in finals}
