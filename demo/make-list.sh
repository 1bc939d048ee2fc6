#!/bin/sh
# make-list.sh N FILE - a demo recipient list of N rows over 500 domains,
# with a few rows that must be rejected (a bad address, a duplicate, a row
# with a missing column) and 1 % of recipients at bounces.test, whose
# server refuses them.
set -eu
n=${1:-200000}
out=${2:-list.csv}
awk -v n="$n" 'BEGIN {
	split("Oslo,Lyon,Porto,Gent,Turku,Split,Cork,Brno,Riga,Bern", city, ",");
	split("Ada,Bo,Chen,Dara,Emil,Fatou,Goran,Hana,Ines,José,Zoë", name, ",");
	print "email,first_name,code,city";
	for (i = 0; i < n; i++) {
		d = (i % 100 == 99) ? "bounces.test" : sprintf("d%03d.test", i % 500);
		printf "user%d@%s,%s,M%07d,%s\n", i, d, name[i % 11 + 1], i, city[i % 10 + 1];
	}
	print "not-an-address,Nobody,M0000000,Oslo";
	print "user1@d001.test,Again,M0000001,Lyon";
	print "short@d002.test,Row";
}' > "$out"
