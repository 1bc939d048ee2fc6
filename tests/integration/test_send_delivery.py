"""`mailroom send` delivery and personalization.

A 10,000-recipient campaign over 200 domains whose MX records (dnsmasq)
point at four loopback hosts, two smtp-sink and two AioPeer: every
recipient gets exactly one message with their own fields, unique
Message-IDs, a Date, CRLF line ends, one `delivered` record each and a
matching summary.  Then personalization details against one AioPeer:
RFC 2047 headers, 8-bit bodies, dot-stuffing, fields with newlines, commas
and quotes, a BOM + CRLF list, long lines broken or folded, byte-identical
messages sharing a transaction, the envelope sender, JSON-lines accounting.
"""
import email.header
import email.utils
import re
import secrets

from peers import (assert_accounting_sane, assert_crlf_only,
                   common_free_port, max_line_length)

FROM = "Campaign <news@sender.test>"
SENDER = "news@sender.test"


def _tpl(body, subject="s"):
    """A template To the recipient with this Subject and body."""
    return ("From: " + FROM + "\nTo: {{email}}\nSubject: " + subject +
            "\n\n" + body)


def _strip_id(mid):
    return (mid or "").strip().strip("<>")


def test_ten_thousand_recipients_over_200_domains(send, dnsmasq, smtp_sink,
                                                   aio_peer):
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    port = common_free_port(hosts)
    sinks = [smtp_sink(host=h, port=port) for h in hosts[:2]]
    aios = [aio_peer(host=h, port=port) for h in hosts[2:]]
    mxnames = [f"mx{n}.test" for n in range(1, 5)]
    domains = [f"d{i:03d}.test" for i in range(200)]
    dns = dnsmasq(mx=[(d, mxnames[i % 4], 10) for i, d in enumerate(domains)],
                  hosts=list(zip(mxnames, hosts)))
    rows = []
    for i in range(10000):
        rows.append([f"u{i:05d}@{domains[i % 200]}", f"User {i:05d}",
                     f"C{i:05d}-{secrets.token_hex(4)}"])
    template = (f"From: {FROM}\n"
                "To: {{name}} <{{email}}>\n"
                "Subject: Your code, {{name}}\n"
                "\n"
                "Hello {{name}},\n"
                "your code is {{code}}.\n")
    r = send(template=template, header=["email", "name", "code"], rows=rows,
             resolver=dns.address, opts={"smtp.port": port}, timeout=120)
    assert r.rc == 0, r
    want = {row[0]: row for row in rows}
    line_of = {row[0]: n for n, row in enumerate(rows, 2)}

    received = []
    for s in sinks:                 # 2,500 each: hosts[i % 4]
        received += s.messages(expect=2500)
    for p in aios:
        for m in p.messages:
            assert_crlf_only(m.data)
        received += p.messages
    assert len(received) == 10000
    seen, ids, mx_of = set(), set(), {}
    for k, m in enumerate(received):
        assert m.mail_from == SENDER
        assert len(m.rcpt_tos) == 1, m.rcpt_tos
        rcpt = m.rcpt_tos[0]
        assert rcpt in want and rcpt not in seen, rcpt
        seen.add(rcpt)
        _, name, code = want[rcpt]
        h = m.headers()
        assert h["to"] == [f"{name} <{rcpt}>"], h["to"]
        assert h["subject"] == [f"Your code, {name}"]
        assert len(h["date"]) == 1
        assert email.utils.parsedate_to_datetime(h["date"][0]) is not None
        [mid] = h["message-id"]
        mid = _strip_id(mid)
        assert mid and mid not in ids
        ids.add(mid)
        body = m.body().replace(b"\r\n", b"\n")
        assert body == f"Hello {name},\nyour code is {code}.\n".encode()
        # The right host took it: domain i -> mx(i % 4 + 1) -> hosts[i % 4].
        i = int(rcpt.split("@")[1][1:4])
        assert m.host == f"{hosts[i % 4]}:{port}", (rcpt, m.host)
        mx_of[rcpt] = mid
        if k % 50 == 0:             # full RFC 5322 parse of a sample
            msg = m.message()
            assert msg["To"].addresses[0].addr_spec == rcpt
            assert msg["Date"].datetime is not None
    assert seen == set(want)

    finals = assert_accounting_sane(r, recipients=want)
    assert {rec["type"] for rec in r.accounting} == {"delivered"}
    assert len(r.accounting) == 10000
    for rcpt, rec in finals.items():
        i = int(rcpt.split("@")[1][1:4])
        assert int(rec["line"]) == line_of[rcpt]
        assert rec["domain"] == domains[i]
        assert rec["mx"].rstrip(".") == mxnames[i % 4]
        assert rec["host"] == f"{hosts[i % 4]}:{port}"
        assert rec["attempt"] == "1" and rec["code"] == "250"
        assert rec["forensics"] == ""
        assert _strip_id(rec["message_id"]) == mx_of[rcpt]
    assert r.count("recipients") == 10000
    assert r.count("delivered") == 10000
    assert r.count("bounced") == 0
    assert r.count("rejected") == 0
    assert r.count("duplicates") == 0
    assert r.count("deferrals") == 0
    assert "duration" in r.summary and "rate" in r.summary


def test_envelope_sender_is_template_from_unless_from_option(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = _tpl("body\n")
    r = send(template=template, rows=[["a@x.test", "A"]],
             routes={"*": peer.address})
    assert r.rc == 0, r
    r2 = send(template=template, rows=[["b@x.test", "B"]],
              routes={"*": peer.address}, mail_from="bounces@other.test")
    assert r2.rc == 0, r2
    a, b = peer.messages
    assert (a.mail_from, a.rcpt_tos) == (SENDER, ["a@x.test"])
    assert (b.mail_from, b.rcpt_tos) == ("bounces@other.test", ["b@x.test"])
    # The From header stays what the template says.
    assert b.message()["From"].addresses[0].addr_spec == SENDER


def test_message_id_and_date_added_and_template_ones_replaced(send,
                                                              aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = ("From: " + FROM + "\r\nTo: {{email}}\r\n"
                "Message-ID: <fixed@template.test>\r\n"
                "Date: Mon, 1 Jan 2001 00:00:00 +0000\r\n"
                "Subject: crlf template\r\n\r\nbody line\r\n")
    rows = [[f"r{i}@x.test", f"R{i}"] for i in range(3)]
    r = send(template=template, rows=rows, routes={"*": peer.address})
    assert r.rc == 0, r
    ids = set()
    for m in peer.messages:
        assert_crlf_only(m.data)
        msg = m.message()
        assert len(msg.get_all("Message-ID")) == 1
        assert len(msg.get_all("Date")) == 1
        assert "fixed@template.test" not in msg["Message-ID"]
        assert msg["Date"].datetime.year >= 2024
        ids.add(msg["Message-ID"])
        assert m.body() == b"body line\r\n"
    # Different rendered To -> three messages, three Message-IDs.
    assert len(ids) == 3


def test_utf8_values_in_headers_are_rfc2047_encoded(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    name = "Zoë Ñandú 日本語"
    template = (f"From: {FROM}\n"
                "To: {{name}} <{{email}}>\n"
                "Subject: Grüße an {{name}}\n\nHallo\n")
    r = send(template=template, rows=[["zoe@x.test", name]],
             routes={"*": peer.address})
    assert r.rc == 0, r
    [m] = peer.messages
    head = m.data.split(b"\r\n\r\n")[0]
    head.decode("ascii")                  # headers are pure ASCII
    raw_subject = m.raw_header("Subject").decode("ascii")
    assert re.search(r"=\?utf-8\?[bq]\?", raw_subject, re.I), raw_subject
    decoded = str(email.header.make_header(
        email.header.decode_header(raw_subject.replace("\r\n", ""))))
    assert decoded.strip() == f"Grüße an {name}"
    to = m.message()["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == (name, "zoe@x.test")
    assert max_line_length(head) <= 998


def test_utf8_body_passes_through_with_8bitmime(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = _tpl("Grüße, {{name}} ✓\n")
    r = send(template=template, rows=[["u@x.test", "Jürgen"]],
             routes={"*": peer.address})
    assert r.rc == 0, r
    [m] = peer.messages
    assert m.body() == "Grüße, Jürgen ✓\r\n".encode()
    assert "BODY=8BITMIME" in [o.upper() for o in m.mail_options]


def test_dot_stuffing_round_trip(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    body = ".leading dot\n.\n..two dots\n. space after dot\n{{name}}\n.\nend\n"
    template = _tpl(body, subject="dots")
    r = send(template=template, rows=[["d@x.test", ".dotname"]],
             routes={"*": peer.address})
    assert r.rc == 0, r
    [m] = peer.messages
    want = body.replace("{{name}}", ".dotname").replace("\n", "\r\n")
    assert m.body() == want.encode()


def test_field_with_newline_and_line_numbers(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = _tpl("Ship to:\n{{addr}}\nThanks\n", subject="address")
    rows = [["a@x.test", "1 Main St\nSpringfield"],
            ["b@x.test", "plain"],
            ["c@x.test", "two\nnew\nlines"],
            ["d@x.test", "last"]]
    r = send(template=template, header=["email", "addr"], rows=rows,
             routes={"*": peer.address})
    assert r.rc == 0, r
    got = {m.rcpt_tos[0]: m for m in peer.messages}
    for rcpt, addr in rows:
        want = f"Ship to:\n{addr}\nThanks\n".replace("\n", "\r\n")
        assert got[rcpt].body() == want.encode()
    # Line numbers: header 1, a 2-3, b 4, c 5-7, d 8.
    lines = {rcpt: int(r.final(rcpt)["line"]) for rcpt, _ in rows}
    assert lines == {"a@x.test": 2, "b@x.test": 4, "c@x.test": 5,
                     "d@x.test": 8}


def test_quoted_fields_with_comma_and_quotes(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = _tpl("Dear {{name}};{{note}}\n")
    list_bytes = (b'email,name,note\n'
                  b'"q@x.test","Doe, Jane","She said ""hi"", twice"\n'
                  b'p@x.test,Plain,\n')
    r = send(template=template, list_bytes=list_bytes,
             routes={"*": peer.address})
    assert r.rc == 0, r
    got = {m.rcpt_tos[0]: m.body() for m in peer.messages}
    assert got == {"q@x.test": b'Dear Doe, Jane;She said "hi", twice\r\n',
                   "p@x.test": b"Dear Plain;\r\n"}


def test_bom_and_crlf_list(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = _tpl("[{{code}}]\n")
    list_bytes = (b"\xef\xbb\xbfemail,code\r\n"
                  b"a@x.test,AAA\r\n"
                  b"b@x.test,BBB\r\n")
    r = send(template=template, list_bytes=list_bytes,
             routes={"*": peer.address})
    assert r.rc == 0, r
    got = {m.rcpt_tos[0]: m.body() for m in peer.messages}
    assert got == {"a@x.test": b"[AAA]\r\n", "b@x.test": b"[BBB]\r\n"}
    assert r.count("rejected") == 0
    assert int(r.final("b@x.test")["line"]) == 3


def test_long_field_value_in_body_is_broken_below_998(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    long_value = "x" * 1500
    template = _tpl("<{{blob}}>\n")
    r = send(template=template, header=["email", "blob"],
             rows=[["l@x.test", long_value]], routes={"*": peer.address})
    assert r.rc == 0, r
    [m] = peer.messages
    assert max_line_length(m.data) <= 998
    assert_crlf_only(m.data)
    assert m.body().replace(b"\r\n", b"") == f"<{long_value}>".encode()


def test_long_header_value_is_folded(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    words = " ".join(f"word{i:03d}" for i in range(200))     # 1599 octets
    template = _tpl("b\n", subject="{{topic}}")
    r = send(template=template, header=["email", "topic"],
             rows=[["h@x.test", words]], routes={"*": peer.address})
    assert r.rc == 0, r
    [m] = peer.messages
    assert max_line_length(m.data) <= 998
    raw = m.raw_header("Subject")
    assert b"\r\n" in raw                       # folded
    unfolded = re.sub(rb"\r\n(?=[ \t])", b"", raw).decode().strip()
    assert re.sub(r"\s+", " ", unfolded) == words


def test_identical_messages_share_one_transaction(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = (f"From: {FROM}\nTo: Subscribers <list@sender.test>\n"
                "Subject: {{city}} news\n\nNews for {{city}}.\n")
    rows = [["p1@x.test", "Paris"], ["r1@x.test", "Rome"],
            ["p2@x.test", "Paris"], ["p3@x.test", "Paris"],
            ["r2@x.test", "Rome"], ["p4@x.test", "Paris"],
            ["o1@y.test", "Paris"]]          # other domain: own transaction
    r = send(template=template, header=["email", "city"], rows=rows,
             routes={"*": peer.address})
    assert r.rc == 0, r
    groups = sorted(sorted(m.rcpt_tos) for m in peer.messages)
    assert groups == [["o1@y.test"],
                      ["p1@x.test", "p2@x.test", "p3@x.test", "p4@x.test"],
                      ["r1@x.test", "r2@x.test"]]
    assert peer.transactions == 3
    for m in peer.messages:
        city = "Paris" if m.rcpt_tos[0][0] in "po" else "Rome"
        assert m.body() == f"News for {city}.\r\n".encode()
        ids = {_strip_id(r.final(rc)["message_id"]) for rc in m.rcpt_tos}
        assert ids == {_strip_id(m.message()["Message-ID"])}
    assert r.count("delivered") == 7
    assert_accounting_sane(r, recipients=[row[0] for row in rows])


def test_max_rcpt_per_message_splits_transactions(send, aio_peer):
    peer = aio_peer(host="127.0.0.2")
    template = (f"From: {FROM}\nTo: Subscribers <list@sender.test>\n"
                "Subject: same for all\n\nSame.\n")
    rows = [[f"s{i}@x.test", "n"] for i in range(7)]
    r = send(template=template, rows=rows, routes={"*": peer.address},
             opts={"send.max_rcpt_per_message": 3})
    assert r.rc == 0, r
    sizes = sorted(len(m.rcpt_tos) for m in peer.messages)
    assert sizes == [1, 3, 3]
    assert sorted(x for m in peer.messages for x in m.rcpt_tos) == \
        sorted(row[0] for row in rows)


def test_json_lines_accounting(send, aio_peer):
    peer = aio_peer(host="127.0.0.2", rcpt_reject=["no@x.test"])
    template = _tpl("{{name}}\n")
    rows = [["yes@x.test", "Y"], ["no@x.test", "N"], ["bad address", "B"]]
    r = send(template=template, rows=rows, routes={"*": peer.address},
             accounting_format="json")
    assert r.rc == 0, r
    assert r.accounting_path.name.endswith(".json")
    recs = r.accounting             # parsed line by line, keys checked
    assert_accounting_sane(r, recipients=["yes@x.test", "no@x.test"])
    assert r.final("yes@x.test")["type"] == "delivered"
    assert r.final("no@x.test")["type"] == "bounced"
    rejected = [x for x in recs if x["type"] == "rejected"]
    assert len(rejected) == 1 and rejected[0]["line"] == "4"
