/*
 * registry_probe.c - a test-only driver of the registry (registry.h),
 * run by the integration tests (tests/integration/test_registry_ldap.py)
 * against a real slapd.  It prints secrets in clear: it is built for the
 * tests and never installed.
 *
 * usage: registry_probe --ldap URI BASE_DN [--bind-dn DN --bind-pw-file
 *            FILE] --key-file FILE COMMAND [ARGS]
 *   get NAME...          one JSON line per name: status, error, user
 *                        (a NAME "-" prints {"pause": true} and waits
 *                        for a line on standard input, so that a test
 *                        can act between lookups)
 *   list                 one JSON line per user, then the status
 *   login NAME...        password on standard input (one line), through
 *                        registry_login_async() on an event loop, every
 *                        login queued at once; a line for each (a NAME
 *                        "-" waits for those before it to end, then
 *                        pauses as get's does)
 *   apop NAME TIMESTAMP DIGEST   the same with an APOP digest
 *   add-user NAME PASSWORD       (to see the read-only refusal)
 * A status is "ok" or the errno name of the negative code.  Exit 0 when
 * the command ran, 1 when the registry did not open, 2 on misuse.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "core/mr_buf.h"
#include "registry/registry.h"

/* One login of a batch, all queued at once and waited for. */
struct probe_login {
	bool		 done;
	int		 status;
	struct mr_buf	 out;
	struct timespec	 t1;
	size_t		*pending;
	struct event_base *base;
};

static const char *
probe_status(int rc)
{
	switch (rc) {
	case 0:
		return "ok";
	case -ENOENT:
		return "ENOENT";
	case -EEXIST:
		return "EEXIST";
	case -EACCES:
		return "EACCES";
	case -EINVAL:
		return "EINVAL";
	case -ENOTSUP:
		return "ENOTSUP";
	case -EIO:
		return "EIO";
	default:
		return "other";
	}
}

/* probe_json - s as a JSON string (null for NULL). */
static void
probe_json(struct mr_buf *b, const char *s)
{
	const unsigned char *p;

	if (s == NULL) {
		mr_buf_puts(b, "null");
		return;
	}
	mr_buf_putc(b, '"');
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			mr_buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			mr_buf_printf(b, "\\u%04x", *p);
		else
			mr_buf_putc(b, (char)*p);
	}
	mr_buf_putc(b, '"');
}

static void
probe_user(struct mr_buf *b, const struct reg_user *u)
{
	const struct reg_account *a;
	size_t i;

	mr_buf_puts(b, "{\"name\": ");
	probe_json(b, u->name);
	mr_buf_puts(b, ", \"verifier\": ");
	probe_json(b, u->verifier);
	mr_buf_puts(b, ", \"apop_secret\": ");
	probe_json(b, u->apop_secret);
	mr_buf_puts(b, ", \"accounts\": [");
	for (i = 0; i < u->naccounts; i++) {
		a = &u->accounts[i];
		mr_buf_printf(b, "%s{\"id\": %" PRId64 ", \"user\": ",
		    i > 0 ? ", " : "", a->id);
		probe_json(b, a->user);
		mr_buf_puts(b, ", \"host\": ");
		probe_json(b, a->host);
		mr_buf_printf(b, ", \"port\": %u, \"tls\": ", a->port);
		probe_json(b, reg_tls_name(a->tls));
		mr_buf_puts(b, ", \"login\": ");
		probe_json(b, a->login);
		mr_buf_puts(b, ", \"secret\": ");
		probe_json(b, a->secret);
		mr_buf_putc(b, '}');
	}
	mr_buf_puts(b, "]}");
}

static void
probe_line(struct mr_buf *b, int rc, const char *error)
{
	mr_buf_printf(b, "{\"status\": \"%s\", \"error\": ", probe_status(rc));
	probe_json(b, rc == 0 ? NULL : error);
}

static int
probe_list_cb(void *arg, const struct reg_user *u)
{
	struct mr_buf b = MR_BUF_INIT;

	(void)arg;
	mr_buf_puts(&b, "{\"user\": ");
	probe_user(&b, u);
	mr_buf_puts(&b, "}");
	printf("%s\n", mr_buf_cstr(&b));
	mr_buf_release(&b);
	return 0;
}

static void
probe_login_cb(void *arg, int status, struct reg_user *user)
{
	struct probe_login *l = arg;

	l->done = true;
	l->status = status;
	clock_gettime(CLOCK_MONOTONIC, &l->t1);
	if (user != NULL)
		probe_user(&l->out, user);
	if (--*l->pending == 0)
		event_base_loopbreak(l->base);
}

/* probe_stdin - the first line of standard input, without its EOL. */
static char *
probe_stdin(size_t *len_r)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	n = getline(&line, &cap, stdin);
	if (n < 0) {
		free(line);
		line = calloc(1, 1);
		n = 0;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	*len_r = (size_t)n;
	return line;
}

/*
 * probe_pause - say {"pause": true} and wait for a line on standard
 * input: the test acts in between.
 */
static void
probe_pause(void)
{
	size_t len;

	printf("{\"pause\": true}\n");
	free(probe_stdin(&len));
}

/*
 * probe_batch - queue the logins of names[0..n) at once, wait for them
 * and print a line for each, in order.  0, or 1 when one could not be
 * queued.
 */
static int
probe_batch(struct registry *r, struct event_base *base, struct reg_login *in,
    char **names, size_t n)
{
	struct mr_buf b = MR_BUF_INIT, err = MR_BUF_INIT;
	struct probe_login *l;
	struct timespec t0;
	size_t i, pending = 0;
	int status = 0;

	l = calloc(n, sizeof(*l));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		l[i].base = base;
		l[i].pending = &pending;
		in->name = names[i];
		if (registry_login_async(r, base, in, probe_login_cb, &l[i],
		    &err) == NULL) {
			fprintf(stderr, "registry_probe: %s\n",
			    mr_buf_cstr(&err));
			status = 1;
			break;
		}
		pending++;
	}
	while (pending > 0)
		event_base_dispatch(base);
	for (i = 0; i < n && status == 0; i++) {
		mr_buf_reset(&b);
		probe_line(&b, l[i].status, "login failed");
		mr_buf_printf(&b, ", \"ms\": %.1f, \"user\": ",
		    (l[i].t1.tv_sec - t0.tv_sec) * 1e3 +
		    (l[i].t1.tv_nsec - t0.tv_nsec) / 1e6);
		mr_buf_puts(&b, l[i].out.len > 0 ? mr_buf_cstr(&l[i].out) :
		    "null");
		printf("%s}\n", mr_buf_cstr(&b));
	}
	for (i = 0; i < n; i++)
		mr_buf_release(&l[i].out);
	free(l);
	mr_buf_release(&b);
	mr_buf_release(&err);
	return status;
}

/*
 * probe_login - login NAME... (one password; the logins between two "-"
 * queued at once, and a "-" waits for a line on standard input after
 * them) or apop NAME TIMESTAMP DIGEST.  Closes *rp: the workers must end
 * before the loop's base goes.
 */
static int
probe_login(struct registry **rp, int argc, char **argv)
{
	struct event_base *base;
	struct reg_login in;
	char *password = NULL;
	size_t len = 0;
	int i, first, status = 0;

	memset(&in, 0, sizeof(in));
	if (strcmp(argv[0], "login") == 0 && argc >= 2) {
		in.kind = REG_LOGIN_PASS;
		password = probe_stdin(&len);
		in.password = password;
		in.password_len = len;
	} else if (strcmp(argv[0], "apop") == 0 && argc == 4) {
		in.kind = REG_LOGIN_APOP;
		in.timestamp = argv[2];
		in.digest = argv[3];
		argc = 2;
	} else {
		fprintf(stderr, "registry_probe: login NAME... | apop NAME "
		    "TIMESTAMP DIGEST\n");
		registry_close(rp);
		return 2;
	}
	base = event_base_new();
	for (first = i = 1; i <= argc && status == 0; i++) {
		if (i < argc && strcmp(argv[i], "-") != 0)
			continue;
		if (i > first)
			status = probe_batch(*rp, base, &in, argv + first,
			    (size_t)(i - first));
		if (i < argc)
			probe_pause();
		first = i + 1;
	}
	free(password);
	registry_close(rp);
	event_base_free(base);
	return status;
}

/* probe_file - the first line of path, or NULL. */
static char *
probe_file(const char *path)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	n = getline(&line, &cap, fp);
	fclose(fp);
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

int
main(int argc, char **argv)
{
	const char *uri = NULL, *base = NULL, *bind_dn = NULL, *pw_file = NULL;
	const char *key_file = NULL;
	struct mr_buf b = MR_BUF_INIT, err = MR_BUF_INIT;
	struct registry *r;
	struct reg_user u;
	char *bind_pw = NULL;
	int i, rc, status = 0;

	/* One line at a time, also into a pipe: a test reads as it goes. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--ldap") == 0 && i + 2 < argc) {
			uri = argv[++i];
			base = argv[++i];
		} else if (strcmp(argv[i], "--bind-dn") == 0 && i + 1 < argc)
			bind_dn = argv[++i];
		else if (strcmp(argv[i], "--bind-pw-file") == 0 &&
		    i + 1 < argc)
			pw_file = argv[++i];
		else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc)
			key_file = argv[++i];
		else
			break;
	}
	if (i >= argc || key_file == NULL || uri == NULL) {
		fprintf(stderr, "usage: registry_probe --ldap URI BASE_DN "
		    "[--bind-dn DN --bind-pw-file FILE] --key-file FILE "
		    "COMMAND [ARGS]\n");
		return 2;
	}
	argc -= i;
	argv += i;
	if (pw_file != NULL && (bind_pw = probe_file(pw_file)) == NULL) {
		fprintf(stderr, "registry_probe: cannot read %s\n", pw_file);
		return 2;
	}
	r = registry_open_ldap(uri, base, bind_dn, bind_pw, key_file, &err);
	free(bind_pw);
	if (r == NULL) {
		probe_line(&b, -EIO, mr_buf_cstr(&err));
		printf("%s}\n", mr_buf_cstr(&b));
		mr_buf_release(&b);
		mr_buf_release(&err);
		return 1;
	}
	mr_buf_release(&err);
	if (strcmp(argv[0], "get") == 0) {
		for (i = 1; i < argc; i++) {
			mr_buf_reset(&b);
			if (strcmp(argv[i], "-") == 0) {
				probe_pause();
				continue;
			}
			rc = registry_user_get(r, argv[i], &u);
			probe_line(&b, rc, registry_error(r));
			mr_buf_puts(&b, ", \"user\": ");
			if (rc == 0)
				probe_user(&b, &u);
			else
				mr_buf_puts(&b, "null");
			printf("%s}\n", mr_buf_cstr(&b));
			reg_user_release(&u);
		}
	} else if (strcmp(argv[0], "list") == 0) {
		rc = registry_user_list(r, probe_list_cb, NULL);
		probe_line(&b, rc, registry_error(r));
		printf("%s}\n", mr_buf_cstr(&b));
	} else if (strcmp(argv[0], "login") == 0 ||
	    strcmp(argv[0], "apop") == 0) {
		status = probe_login(&r, argc, argv);
	} else if (strcmp(argv[0], "add-user") == 0 && argc == 3) {
		rc = registry_user_add(r, argv[1], argv[2], NULL);
		probe_line(&b, rc, registry_error(r));
		printf("%s}\n", mr_buf_cstr(&b));
	} else {
		fprintf(stderr, "registry_probe: unknown command %s\n",
		    argv[0]);
		status = 2;
	}
	mr_buf_release(&b);
	registry_close(&r);
	return status;
}
