#!/bin/sh
# demo.sh - install what is missing, build, and send a demo campaign of
# 200,000 personalized messages to Postfix's smtp-sink on loopback,
# recorded in the embedded SQLite store (so that it could be resumed
# after a crash), with live progress and the summary on screen.  Outputs
# go to demo-out/.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh build demo
sh scripts/build.sh >/dev/null
out=demo-out
rm -rf "$out" && mkdir -p "$out"
sh demo/make-list.sh 200000 "$out/list.csv"

# Two sinks on loopback: one accepts everything, the other refuses every
# recipient (550), as a domain with no such users would.
/usr/sbin/smtp-sink -u nobody 127.0.0.1:25250 256 &
ok=$!
/usr/sbin/smtp-sink -u nobody -f rcpt \
	-B "550 5.1.1 Recipient address rejected: User unknown" \
	127.0.0.1:25251 16 &
refuse=$!
trap 'kill $ok $refuse 2>/dev/null || true' EXIT INT TERM
sleep 0.3

echo "== mailroom send: 200,000 recipients over 501 domains, recorded in"
echo "   the SQLite store $out/mailroom.db as campaign \"demo\" =="
status=0
./build/mailroom send --store "$out/mailroom.db" --campaign demo \
	--template demo/newsletter.eml --list "$out/list.csv" \
	--route 'bounces.test=127.0.0.1:25251' --route '*=127.0.0.1:25250' \
	--accounting "$out/accounting.csv" --reject-file "$out/rejects.csv" \
	--forensics-dir "$out/forensics" -o send.forensics_max=20 \
	-o general.hostname=demo.mailroom.test || status=$?
echo "== first records of $out/accounting.csv =="
head -4 "$out/accounting.csv"
echo "== $out/rejects.csv =="
cat "$out/rejects.csv"
echo "== the campaign as the store keeps it: mailroom campaign show demo =="
echo "   (its summary, the one printed above, left out)"
./build/mailroom campaign show demo --store "$out/mailroom.db" |
	sed '/^summary:/,$d'
exit $status
