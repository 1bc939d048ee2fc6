/*
 * cstore.c - opening the store, leases, recorded options.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "core/mr_err.h"
#include "core/xalloc.h"
#include "delivery/cstore.h"

/* cstore_mkdirs - make path's parent directories (mkdir -p). */
static void
cstore_mkdirs(const char *path)
{
	char *d = xstrdup(path), *p;

	for (p = d + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		(void)mkdir(d, 0750);
		*p = '/';
	}
	free(d);
}

struct store *
cstore_open(const struct mr_config *cfg, bool create, struct mr_buf *err,
    int *ex_r)
{
	struct store *s;
	int code = 0;

	if (create)
		cstore_mkdirs(cfg->store_path);
	s = store_open(cfg->store_path, create ? STORE_CREATE : 0,
	    (int)cfg->store_busy_timeout, err, &code);
	if (s != NULL)
		return s;
	*ex_r = cstore_ex(code, EX_DATAERR);
	return NULL;
}

int
cstore_ex(int code, int fallback)
{
	switch (code) {
	case -ENOENT:
		return EX_NOINPUT;
	case -EBUSY:
		return EX_TEMPFAIL;
	case -EEXIST:
	case -EINVAL:
		return EX_DATAERR;
	case -EROFS:
	case -EACCES:
	case -EPERM:
		return EX_NOPERM;
	case -ENOSPC:
		return EX_CANTCREAT;
	default:
		return fallback;
	}
}

const char *
cstore_owner(void)
{
	static char owner[300];
	char host[256];

	if (owner[0] == '\0') {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(owner, sizeof(owner), "%s:%ld", host, (long)getpid());
	}
	return owner;
}

/* cstore_zombie - has pid exited, waiting only to be reaped? */
static bool
cstore_zombie(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *fp;
	bool z = false;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fp = fopen(path, "re");
	if (fp == NULL)
		return false;
	/* "pid (comm) S ...": the state follows the last ')'. */
	if (fgets(buf, sizeof(buf), fp) != NULL &&
	    (p = strrchr(buf, ')')) != NULL)
		z = p[1] == ' ' && p[2] == 'Z';
	fclose(fp);
	return z;
}

/* cstore_holder_dead - is holder ("host:pid") a process of this machine
 * that no longer runs? */
static bool
cstore_holder_dead(const char *holder)
{
	const char *me = cstore_owner(), *colon = strrchr(holder, ':');
	size_t hl = colon ? (size_t)(colon - holder) : 0;
	char *end;
	long pid;

	if (colon == NULL || strncmp(holder, me, hl) != 0 || me[hl] != ':')
		return false;
	pid = strtol(colon + 1, &end, 10);
	if (*end != '\0' || pid <= 0)
		return false;
	if (kill((pid_t)pid, 0) != 0)
		return errno == ESRCH;
	return cstore_zombie((pid_t)pid);
}

int
cstore_claim(struct store *s, struct store_campaign *c,
    const struct mr_config *cfg, struct mr_buf *err)
{
	int64_t now = (int64_t)time(NULL);
	int64_t until = now + cfg->store_lease_time / 1000;
	char *holder = NULL;
	int code;

	code = s->ops->campaign_claim(s, c->id, cstore_owner(), until, now,
	    &holder);
	if (code == -EBUSY && holder != NULL && cstore_holder_dead(holder)) {
		/* Its sender died here: no need to wait for the lease. */
		free(holder);
		holder = NULL;
		code = s->ops->campaign_claim(s, c->id, cstore_owner(), until,
		    INT64_MAX, &holder);
	}
	if (code == -EBUSY && holder == NULL) {
		/* Not a lease: the store itself is locked. */
		mr_buf_printf(err, "%s", store_error(s));
		return EX_TEMPFAIL;
	}
	if (code == -EBUSY) {
		mr_buf_printf(err, "campaign %s is being sent by %s; it can be "
		    "taken over when that sender's lease runs out", c->name,
		    holder);
		free(holder);
		return EX_TEMPFAIL;
	}
	free(holder);
	if (code != 0) {
		mr_buf_printf(err, "%s", store_error(s));
		return EX_IOERR;
	}
	c->state = STORE_STATE_RUNNING;
	free(c->owner);
	c->owner = xstrdup(cstore_owner());
	c->lease_until = until;
	return 0;
}

/* Keys whose value is a path: made absolute before they are recorded. */
static const char *const cstore_path_keys[] = {
	"send.accounting_file", "send.reject_file", "send.forensics_dir",
	"recovery.journal_dir", "general.log_file", "smtp.tls_ca_file", NULL,
};

/* Sections that belong to the process that opens the store, not to the
 * campaign: never recorded with it. */
static const char *const cstore_unrecorded[] = {
	"store.", "daemon.", NULL,
};

char *
cstore_abspath(const char *path)
{
	struct mr_buf b = MR_BUF_INIT;
	char *cwd;

	if (path[0] == '/' || path[0] == '\0')
		return xstrdup(path);
	cwd = getcwd(NULL, 0);
	if (cwd == NULL)
		return NULL;
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	mr_buf_printf(&b, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/",
	    strcmp(path, ".") == 0 ? "" : path);
	free(cwd);
	return b.data;
}

static bool
cstore_key_in(const char *kv, const char *const *keys, bool prefix)
{
	const char *eq = strchr(kv, '=');
	size_t n = eq ? (size_t)(eq - kv) : strlen(kv), i;

	for (i = 0; keys[i] != NULL; i++) {
		if (prefix && strncasecmp(kv, keys[i], strlen(keys[i])) == 0)
			return true;
		if (!prefix && strlen(keys[i]) == n &&
		    strncasecmp(kv, keys[i], n) == 0)
			return true;
	}
	return false;
}

/* cstore_encode_options - config file and overrides as recorded text. */
static char *
cstore_encode_options(const struct conf_cli *cl)
{
	struct mr_buf b = MR_BUF_INIT;
	size_t i;

	if (cl->config_path != NULL)
		mr_buf_printf(&b, "config=%s\n", cl->config_path);
	for (i = 0; i < cl->nsets; i++)
		mr_buf_printf(&b, "%s\n", cl->sets[i]);
	if (b.data == NULL)
		return xstrdup("");
	return b.data;
}

char *
cstore_record_options(const struct conf_cli *cl, struct mr_buf *err)
{
	struct conf_cli rec = { 0 };
	struct mr_buf b = MR_BUF_INIT;
	const char *eq;
	char *abs, *out = NULL;
	size_t i;

	if (cl->config_path != NULL) {
		if ((rec.owned_path = cstore_abspath(cl->config_path)) == NULL)
			goto fail;
		rec.config_path = rec.owned_path;
	}
	for (i = 0; i < cl->nsets; i++) {
		if (cstore_key_in(cl->sets[i], cstore_unrecorded, true))
			continue;
		eq = strchr(cl->sets[i], '=');
		if (eq == NULL || !cstore_key_in(cl->sets[i], cstore_path_keys,
		    false)) {
			(void)conf_cli_set_kv(&rec, cl->sets[i]);
			continue;
		}
		if ((abs = cstore_abspath(eq + 1)) == NULL)
			goto fail;
		mr_buf_reset(&b);
		mr_buf_append(&b, cl->sets[i], (size_t)(eq - cl->sets[i]) + 1);
		mr_buf_puts(&b, abs);
		free(abs);
		(void)conf_cli_set_kv(&rec, mr_buf_cstr(&b));
	}
	out = cstore_encode_options(&rec);
	goto done;
fail:
	mr_buf_printf(err, "cannot tell the current directory (to record "
	    "paths absolute): %s", strerror(errno));
done:
	conf_cli_release(&rec);
	mr_buf_release(&b);
	return out;
}

void
cstore_apply_options(const char *options, const struct conf_cli *cl,
    struct conf_cli *out)
{
	const char *p = options ? options : "", *e;
	char *line;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->config_path = cl->config_path;
	for (; *p; p = *e ? e + 1 : e) {
		e = strchr(p, '\n');
		if (e == NULL)
			e = p + strlen(p);
		line = xmemdup(p, (size_t)(e - p));
		if (strncmp(line, "config=", 7) == 0) {
			if (cl->config_path == NULL) {
				free(out->owned_path);
				out->owned_path = xstrdup(line + 7);
				out->config_path = out->owned_path;
			}
		} else if (*line != '\0') {
			(void)conf_cli_set_kv(out, line);
		}
		free(line);
	}
	for (i = 0; i < cl->nsets; i++)
		(void)conf_cli_set_kv(out, cl->sets[i]);
}
