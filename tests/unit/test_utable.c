/*
 * test_utable.c - the edge proxy's user table: lookup, verifiers, the
 * expiry heap, deletion, eviction when full, and its memory per user.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>

#include "net/cidr.h"
#include "pop3edge/utable.h"

static uint32_t
add(struct utable *t, const char *name, uint64_t expires)
{
	return utable_add(t, name, strlen(name), expires);
}

static void
test_find_and_verifier(void **state)
{
	struct utable *t = utable_new(100);
	struct utable_entry *u;
	uint32_t id;

	(void)state;
	id = add(t, "alice", 50);
	assert_int_equal(utable_find(t, "alice", 5), id);
	assert_int_equal(utable_find(t, "alic", 4), UTABLE_NONE);
	u = utable_get(t, id);
	assert_false(utable_check_password(t, id, "pw", 2));
	utable_set_password(t, id, "pw", 2);
	assert_true(utable_check_password(t, id, "pw", 2));
	assert_false(utable_check_password(t, id, "pw ", 3));
	assert_false(utable_check_password(t, id, "PW", 2));
	/* Never the password itself. */
	assert_null(memmem(u, sizeof(*u), "pw", 2));
	utable_free(&t);
}

static void
test_heap_order_delete_and_reuse(void **state)
{
	struct utable *t = utable_new(1000);
	char name[32];
	uint64_t exp, last = 0;
	uint32_t i, id;

	(void)state;
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "u%u", i);
		add(t, name, (uint64_t)((i * 7919) % 1000));
	}
	/* Reschedule some; delete some from the middle. */
	for (i = 0; i < 500; i += 5) {
		snprintf(name, sizeof(name), "u%u", i);
		utable_schedule(t, utable_find(t, name, strlen(name)), 2000 + i);
	}
	for (i = 1; i < 500; i += 7) {
		snprintf(name, sizeof(name), "u%u", i);
		utable_del(t, utable_find(t, name, strlen(name)));
		assert_int_equal(utable_find(t, name, strlen(name)),
		    UTABLE_NONE);
	}
	/* Popping in heap order gives non-decreasing expiries. */
	while ((id = utable_next(t, &exp)) != UTABLE_NONE) {
		assert_true(exp >= last);
		last = exp;
		utable_del(t, id);
	}
	assert_int_equal(utable_count(t), 0);
	/* Freed slots are used again. */
	add(t, "again", 1);
	assert_int_equal(utable_count(t), 1);
	utable_free(&t);
}

static void
test_full_table_evicts_unused_entries(void **state)
{
	struct utable *t = utable_new(3);
	uint32_t a, b, c, d;

	(void)state;
	a = add(t, "a", 10);
	b = add(t, "b", 5);
	c = add(t, "c", 20);
	utable_get(t, b)->refs = 1;	/* in use: never evicted */
	d = add(t, "d", 30);
	assert_int_not_equal(d, UTABLE_NONE);
	/* "a" went: the earliest-expiring entry not in use. */
	assert_int_equal(utable_find(t, "a", 1), UTABLE_NONE);
	assert_int_equal(utable_find(t, "b", 1), b);
	utable_get(t, c)->refs = 1;
	utable_get(t, d)->refs = 1;
	assert_int_equal(add(t, "e", 1), UTABLE_NONE);
	(void)a;
	utable_free(&t);
}

static void
test_bytes_per_user(void **state)
{
	struct utable *t = utable_new(1000000);
	char name[64];
	uint32_t i, n = 100000;
	size_t bytes;

	(void)state;
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "user%07u@example.test", i);
		add(t, name, i);
	}
	bytes = utable_bytes(t);
	print_message("%u users: %zu bytes, %zu a user (names of 24 "
	    "octets)\n", n, bytes, bytes / n);
	assert_true(bytes / n < 200);
	utable_free(&t);
}

static void
test_cidr(void **state)
{
	struct net_cidr l[3], scratch;
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };

	(void)state;
	assert_int_equal(net_cidr_parse("10.1.0.0/16", 11, &l[0]), 0);
	assert_int_equal(net_cidr_parse("::1/128", 7, &l[1]), 0);
	assert_int_equal(net_cidr_parse("192.0.2.7", 9, &l[2]), 0);
	assert_int_equal(net_cidr_parse("10.0.0.0/33", 11, &scratch), -1);
	assert_int_equal(net_cidr_parse("10.0.0.0/", 9, &scratch), -1);
	assert_int_equal(net_cidr_parse("host/8", 6, &scratch), -1);
	inet_pton(AF_INET, "10.1.200.3", &s4.sin_addr);
	assert_true(net_cidr_match(l, 3, (struct sockaddr *)&s4));
	inet_pton(AF_INET, "10.2.0.1", &s4.sin_addr);
	assert_false(net_cidr_match(l, 3, (struct sockaddr *)&s4));
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &s6.sin6_addr);
	assert_true(net_cidr_match(l, 3, (struct sockaddr *)&s6));
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	assert_true(net_cidr_match(l, 3, (struct sockaddr *)&s6));
	assert_true(net_is_loopback((struct sockaddr *)&s6));
	inet_pton(AF_INET, "127.9.9.9", &s4.sin_addr);
	assert_true(net_is_loopback((struct sockaddr *)&s4));
	inet_pton(AF_INET, "128.0.0.1", &s4.sin_addr);
	assert_false(net_is_loopback((struct sockaddr *)&s4));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_and_verifier),
		cmocka_unit_test(test_heap_order_delete_and_reuse),
		cmocka_unit_test(test_full_table_evicts_unused_entries),
		cmocka_unit_test(test_bytes_per_user),
		cmocka_unit_test(test_cidr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
