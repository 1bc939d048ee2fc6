#!/bin/sh
# send.sh - mailroom send against its peers, in one run, on loopback.
#
#   sh bench/send.sh [RECIPIENTS] [POSTFIX_MESSAGES]
#
# Three senders deliver 1 KB messages to Postfix's smtp-sink:
#   (a) smtp-source -d -s 20: connection reuse, 20 parallel sessions, the
#       ceiling of a plain SMTP client on this machine;
#   (b) mailroom send: RECIPIENTS (default 1,000,000) over 1,000 domains,
#       a ~1 KB template with 3 fields, at most 20 sessions, without and
#       (b2) with recovery (a store and the journals);
#   (c) Postfix as a relay, fed by smtp-source, delivering to the sink
#       (POSTFIX_MESSAGES, default 50,000: it is the slow one).
# It prints a Markdown table of messages per second and the ratios, and
# mailroom's peak RSS and bytes per queued recipient.  Runs as root (it
# starts a private Postfix instance); everything stays on 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
PN=${2:-50000}
SIZE=1100		# smtp-source -l: about mailroom's rendered size

sh scripts/deps.sh build demo
command -v /usr/bin/time >/dev/null || {
	apt-get update -qq && apt-get install -y -qq time >/dev/null; }
sh scripts/build.sh >/dev/null

W=$(mktemp -d /tmp/mailroom-bench.XXXXXX)
chmod 755 "$W"
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	[ -f "$W/pf/etc/main.cf" ] && postfix -c "$W/pf/etc" stop \
	    >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
rate() { echo "scale=1; $1 / ($3 - $2)" | bc; }

# The campaign: N rows over 1,000 domains, a 1 KB template, 3 fields.
awk -v n="$N" 'BEGIN { print "email,first_name,code";
	for (i = 0; i < n; i++)
		printf "user%d@domain%d.test,Name%d,%08d\n", i, i % 1000, i, i * 7 }' \
    > "$W/list.csv"
{
	printf 'From: Bench <bench@sender.test>\nTo: {{first_name}} <{{email}}>\n'
	printf 'Subject: Your code {{code}}\n\nHello {{first_name}},\n\n'
	i=0
	while [ $i -lt 11 ]; do
		printf 'This is the body text of a benchmark message, padded '
		printf 'to about one kilobyte.\n'
		i=$((i + 1))
	done
	printf '\nYour code: {{code}}\n'
} > "$W/tmpl.eml"

sink() {	# sink PORT [extra smtp-sink options]
	port=$1; shift
	/usr/sbin/smtp-sink -u nobody "$@" 127.0.0.1:"$port" 1024 &
	PIDS="$PIDS $!"
	SINK=$!
	sleep 0.3
}

echo "== (a) smtp-source -d -s 20 -m $N -l $SIZE -> smtp-sink" >&2
sink 25301
t0=$(now)
smtp-source -d -s 20 -m "$N" -l $SIZE -f a@sender.test -t b@rcpt.test \
    127.0.0.1:25301
t1=$(now)
A=$(rate "$N" "$t0" "$t1")
kill $SINK

echo "== (b) mailroom send, $N recipients -> smtp-sink" >&2
sink 25302
/usr/bin/time -f "%M" -o "$W/rss" ./build/mailroom send --no-progress \
    --template "$W/tmpl.eml" --list "$W/list.csv" \
    --route '*=127.0.0.1:25302' -o smtp.max_connections=20 \
    -o general.hostname=bench.mailroom.test \
    > "$W/summary"
B=$(awk '/^rate:/ { print $2 }' "$W/summary")
RSS=$(cat "$W/rss")
MEM=$(awk '/^memory:/ { print $2 }' "$W/summary")
WORKERS=$(awk '/^sessions:/ { print $2 }' "$W/summary")
DELIVERED=$(awk '/^delivered:/ { print $2 }' "$W/summary")
kill $SINK

echo "== (b2) mailroom send with recovery (store + journal), $N recipients" >&2
sink 25305
STORE="$W/store/mailroom.db"
mkdir -p "$W/store"
# Sample the recovery state on disk (store + journals) while it runs.
( peak=0
  while :; do
	now=$(du -sb "$W/store" 2>/dev/null | cut -f1)
	[ "${now:-0}" -gt "$peak" ] && peak=$now && echo "$peak" > "$W/peak"
	sleep 0.2
  done ) &
SAMPLER=$!
PIDS="$PIDS $SAMPLER"
/usr/bin/time -f "%M" -o "$W/rss2" ./build/mailroom send --no-progress \
    --store "$STORE" --campaign bench \
    --template "$W/tmpl.eml" --list "$W/list.csv" \
    --route '*=127.0.0.1:25305' -o smtp.max_connections=20 \
    -o general.hostname=bench.mailroom.test > "$W/summary2"
kill $SAMPLER
B2=$(awk '/^rate:/ { print $2 }' "$W/summary2")
PEAK=$(cat "$W/peak")
STOREB=$(du -sb "$STORE" | cut -f1)
kill $SINK

echo "== (c) smtp-source -> Postfix relay -> smtp-sink, $PN messages" >&2
PF="$W/pf"
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
chown postfix "$PF/data"
sed -e 's/^smtp \{6\}inet .*smtpd$/127.0.0.1:25304 inet n - n - - smtpd/' \
    /etc/postfix/master.cf > "$PF/etc/master.cf"
cat > "$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.bench.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:25303
default_destination_concurrency_limit = 20
smtpd_recipient_restrictions = permit_mynetworks, reject
EOF
postfix -c "$PF/etc" start >/dev/null 2>&1
sink 25303 -M "$PN"
t0=$(now)
smtp-source -d -s 20 -m "$PN" -l $SIZE -f a@sender.test -t b@rcpt.test \
    127.0.0.1:25304
while kill -0 $SINK 2>/dev/null; do sleep 0.1; done	# -M: all arrived
t1=$(now)
C=$(rate "$PN" "$t0" "$t1")

cat <<EOF

| sender | messages | msg/s |
|---|---|---|
| (a) smtp-source -d -s 20 | $N | $A |
| (b) mailroom send | $DELIVERED | $B |
| (b2) mailroom send, recovery on | $N | $B2 |
| (c) Postfix relay (smtp-source -> Postfix -> sink) | $PN | $C |

- (b)/(a) = $(echo "scale=2; $B / $A" | bc)
- (b)/(c) = $(echo "scale=1; $B / $C" | bc)
- recovery on / off = $(echo "scale=3; $B2 / $B" | bc) (target >= 0.9)
- recovery state on disk: peak $PEAK bytes during the run (the store
  plus journal segments, which are allocated whole, 8 MB each); the
  store file after it: $STOREB bytes, $(echo "scale=3; $STOREB / $N" | bc)
  bytes per recipient
- mailroom peak RSS: $((RSS / 1024)) MB for $N recipients
- mailroom bytes per queued recipient: $MEM (recipient table + queue entry)
- mailroom SMTP sessions opened: $WORKERS
- machine: $(nproc) CPUs, $(uname -r)
EOF
