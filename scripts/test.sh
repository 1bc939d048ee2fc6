#!/bin/sh
# test.sh - install what is missing, build, and run every test: the unit
# tests and the integration tests (against real peers: smtp-sink,
# aiosmtpd, dnsmasq, Dovecot), once on a normal build and once on a build with
# AddressSanitizer and UndefinedBehaviorSanitizer.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh build test
sh scripts/build.sh >/dev/null

echo "== configuration reference is current =="
./build/mailroom config --doc | diff -u docs/CONFIG.md - ||
	{ echo "docs/CONFIG.md is stale: ./build/mailroom config --doc > docs/CONFIG.md"; exit 1; }

echo "== unit tests =="
meson test -C build --suite unit --print-errorlogs

echo "== unit tests under ASan+UBSan =="
[ -f build-asan/build.ninja ] ||
	meson setup build-asan -Db_sanitize=address,undefined \
	    -Db_lundef=false >/dev/null
ninja -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	meson test -C build-asan --suite unit --print-errorlogs

echo "== integration tests =="
/usr/bin/python3 -m pytest -q -p no:cacheprovider --durations=12 \
	tests/integration

echo "== integration tests under ASan+UBSan (without the slow scenarios) =="
MAILROOM_BIN="$PWD/build-asan/mailroom" \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider -m "not slow" \
	--durations=12 tests/integration
echo "== all tests passed =="
