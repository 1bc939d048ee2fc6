#!/bin/sh
# deps.sh - install, from Debian's packages, what mailroom needs that the
# machine lacks.  "build" is enough to compile; "demo" adds Postfix's
# smtp-sink; "test" adds the peers and tools the test suite talks to;
# "bench" adds the peers the benchmarks measure mailroom against.
# Runs as root (apt-get); does nothing when everything is present.
set -eu

build="gcc libc6-dev meson ninja-build pkg-config libevent-dev libc-ares-dev \
libssl-dev libinih-dev libxxhash-dev libcmocka-dev libsqlite3-dev libldap-dev"
demo="postfix"
test="postfix dnsmasq openssl swaks libnet-ssleay-perl python3-pytest python3-aiosmtpd \
python3-dnslib dovecot-core dovecot-pop3d dovecot-imapd dovecot-lmtpd curl slapd \
ldap-utils fetchmail python3-cryptography"
bench="nginx libnginx-mod-mail perdition"

want="$build"
for what in "$@"; do
	case "$what" in
	build) ;;
	demo) want="$want $demo" ;;
	test) want="$want $demo $test" ;;
	bench) want="$want $demo $test $bench" ;;
	*) echo "deps.sh: unknown set '$what' (build, demo, test, bench)" >&2; exit 64 ;;
	esac
done

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing"
# Postfix asks how to configure the system MTA; it must not configure or
# start one: we only use its smtp-sink and smtp-source test tools.
echo "postfix postfix/main_mailer_type select No configuration" |
    debconf-set-selections
# Nor may the packages of Dovecot, slapd, nginx or perdition start system
# servers: the tests and benchmarks run their own instances.  Without a
# policy of the machine's own, forbid starting services for the length of
# this install.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\nexit 101\n' > "$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $missing >/dev/null
