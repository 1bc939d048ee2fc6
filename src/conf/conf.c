/*
 * conf.c - load, override, check and document the configuration.
 *
 * The INI syntax is parsed by inih; this file maps each key to its entry
 * in conf_params[], converts and bounds-checks the value, and reports the
 * first error with file and line.  inih is fed through a reader that counts
 * lines and refuses over-long ones, since its own handler callback does
 * not know the line number.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "conf_int.h"
#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"

struct conf_loader {
	struct mr_config	*cfg;
	FILE			*fp;
	const char		*path;
	unsigned		 line;		/* line being parsed */
	int			 error;		/* first error code */
	struct mr_buf		*err;		/* first error message */
	bool			 overlong;
	unsigned		 header_line;	/* the last [section] line */
	unsigned		 dest_line;	/* header of the last dest made */
	unsigned		 pool_line;	/* ... of the last pool made */
	/* Which parameters were set by this file (duplicates are errors,
	 * the first value of a list replaces its default). */
	bool			 seen[256];
};

/* Parameters set by conf_set() since conf_init(): the first override of
 * a list replaces the file's values, later ones append.  The process loads
 * one configuration, in main, before any thread starts. */
static bool conf_overridden[256];

static const struct conf_param *
conf_lookup(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < conf_nparams; i++) {
		if (strcasecmp(conf_params[i].section, section) == 0 &&
		    strcasecmp(conf_params[i].name, name) == 0)
			return &conf_params[i];
	}
	return NULL;
}

static void *
conf_field(struct mr_config *cfg, const struct conf_param *p)
{
	return (char *)cfg + p->offset;
}

static const void *
conf_cfield(const struct mr_config *cfg, const struct conf_param *p)
{
	return (const char *)cfg + p->offset;
}

static void
conf_list_clear(struct conf_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void
conf_list_add(struct conf_list *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
}

/* conf_parse_number - a decimal with an optional unit from units[]. */
static int
conf_parse_number(const char *s, const char *const *units,
    const long long *scale, long long default_scale, long long *out)
{
	unsigned long long v;
	char *end;
	size_t i;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return MR_EINVAL_INPUT;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE || v > (unsigned long long)LLONG_MAX)
		return MR_ERANGE_VALUE;
	while (isspace((unsigned char)*end))
		end++;
	if (*end == '\0') {
		if (default_scale && v > (unsigned long long)LLONG_MAX /
		    (unsigned long long)default_scale)
			return MR_ERANGE_VALUE;
		*out = (long long)v * (default_scale ? default_scale : 1);
		return 0;
	}
	for (i = 0; units && units[i]; i++) {
		size_t n = strlen(units[i]);

		if (strncasecmp(end, units[i], n) != 0)
			continue;
		end += n;
		while (isspace((unsigned char)*end))
			end++;
		if (*end != '\0')
			return MR_EINVAL_INPUT;
		if (v > (unsigned long long)LLONG_MAX /
		    (unsigned long long)scale[i])
			return MR_ERANGE_VALUE;
		*out = (long long)v * scale[i];
		return 0;
	}
	return MR_EINVAL_INPUT;
}

int
conf_parse_duration(const char *s, long long *ms_r)
{
	/* "ms" must be tried before "m". */
	static const char *const units[] = {
		"ms", "s", "m", "h", "d", NULL,
	};
	static const long long scale[] = {
		1, 1000, 60000, 3600000, 86400000,
	};

	return conf_parse_number(s, units, scale, 1000, ms_r);
}

int
conf_parse_size(const char *s, long long *bytes_r)
{
	static const char *const units[] = { "k", "m", "g", NULL };
	static const long long scale[] = { 1LL << 10, 1LL << 20, 1LL << 30 };

	return conf_parse_number(s, units, scale, 1, bytes_r);
}

int
conf_parse_rate(const char *s, long long *per_hour_r)
{
	static const char *const units[] = { "/s", "/m", "/h", NULL };
	static const long long scale[] = { 3600, 60, 1 };

	return conf_parse_number(s, units, scale, 1, per_hour_r);
}

int
conf_parse_bool(const char *s, bool *b_r)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };
	size_t i;

	for (i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*b_r = true;
			return 0;
		}
	}
	for (i = 0; no[i]; i++) {
		if (strcasecmp(s, no[i]) == 0) {
			*b_r = false;
			return 0;
		}
	}
	return MR_EINVAL_INPUT;
}

static void
conf_describe_bounds(const struct conf_param *p, struct mr_buf *out)
{
	size_t i;

	switch (p->type) {
	case CONF_INT:
		mr_buf_printf(out, "an integer from %lld to %lld", p->min,
		    p->max);
		break;
	case CONF_DURATION:
		mr_buf_printf(out, "a duration from %lldms to %lldms "
		    "(units ms, s, m, h, d)", p->min, p->max);
		break;
	case CONF_SIZE:
		mr_buf_printf(out, "a size from %lld to %lld bytes "
		    "(units k, M, G)", p->min, p->max);
		break;
	case CONF_BOOL:
		mr_buf_puts(out, "yes or no");
		break;
	case CONF_RATE:
		mr_buf_printf(out, "a rate from %lld to %lld per hour (N/s, "
		    "N/m, N/h)", p->min, p->max);
		break;
	case CONF_ENUM:
		mr_buf_puts(out, "one of");
		for (i = 0; p->choices[i]; i++)
			mr_buf_printf(out, "%s %s", i ? "," : "",
			    p->choices[i]);
		break;
	case CONF_STRING:
	case CONF_LIST:
		mr_buf_puts(out, "a string");
		break;
	}
}

/*
 * conf_assign - convert value for p and store it.  append: a list value
 * is added to the list rather than replacing it.
 */
static int
conf_assign(struct mr_config *cfg, const struct conf_param *p,
    const char *value, bool append, struct mr_buf *err)
{
	void *field = conf_field(cfg, p);
	long long n;
	size_t i;
	bool b;
	int r = 0;

	switch (p->type) {
	case CONF_INT:
	case CONF_DURATION:
	case CONF_SIZE:
	case CONF_RATE:
		if (p->type == CONF_RATE) {
			r = conf_parse_rate(value, &n);
		} else if (p->type == CONF_INT) {
			char *end;

			errno = 0;
			n = strtoll(value, &end, 10);
			if (end == value || *end != '\0' || errno == ERANGE)
				r = MR_EINVAL_INPUT;
		} else if (p->type == CONF_DURATION) {
			r = conf_parse_duration(value, &n);
		} else {
			r = conf_parse_size(value, &n);
		}
		if (r == 0 && (n < p->min || n > p->max))
			r = MR_ERANGE_VALUE;
		if (r == 0)
			*(long long *)field = n;
		break;
	case CONF_BOOL:
		r = conf_parse_bool(value, &b);
		if (r == 0)
			*(bool *)field = b;
		break;
	case CONF_ENUM:
		r = MR_EINVAL_INPUT;
		for (i = 0; p->choices[i]; i++) {
			if (strcasecmp(value, p->choices[i]) == 0) {
				*(int *)field = (int)i;
				r = 0;
				break;
			}
		}
		break;
	case CONF_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		break;
	case CONF_LIST:
		if (p->offset == offsetof(struct mr_config, shaping_rule) &&
		    *value != '\0') {
			struct conf_shape_rule rule;

			r = conf_parse_shape_rule(value, &rule, err);
			if (r != 0)
				return r;
			conf_shape_rule_release(&rule);
		}
		if (!append)
			conf_list_clear(field);
		if (*value != '\0')
			conf_list_add(field, value);
		break;
	}
	if (r != 0) {
		mr_buf_printf(err, "%s.%s: bad value \"%s\": expected ",
		    p->section, p->name, value);
		conf_describe_bounds(p, err);
	}
	return r;
}

void
conf_init(struct mr_config *cfg)
{
	struct mr_buf err = MR_BUF_INIT;
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	MR_ASSERT(conf_nparams <= sizeof(conf_overridden));
	memset(conf_overridden, 0, sizeof(conf_overridden));
	for (i = 0; i < conf_nparams; i++) {
		if (conf_assign(cfg, &conf_params[i], conf_params[i].def,
		    false, &err) != 0)
			mr_panic("bad default: %s", mr_buf_cstr(&err));
	}
	mr_buf_release(&err);
}

void
conf_release(struct mr_config *cfg)
{
	size_t i;

	for (i = 0; i < conf_nparams; i++) {
		void *field = conf_field(cfg, &conf_params[i]);

		if (conf_params[i].type == CONF_STRING) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (conf_params[i].type == CONF_LIST) {
			conf_list_clear(field);
		}
	}
	for (i = 0; i < cfg->shaping_ndests; i++)
		conf_dest_release(&cfg->shaping_dests[i]);
	free(cfg->shaping_dests);
	cfg->shaping_dests = NULL;
	cfg->shaping_ndests = 0;
	for (i = 0; i < cfg->npools; i++)
		conf_pool_release(&cfg->pools[i]);
	free(cfg->pools);
	cfg->pools = NULL;
	cfg->npools = 0;
}

static char *
conf_reader(char *str, int num, void *stream)
{
	struct conf_loader *ld = stream;
	size_t n;

	if (ld->overlong)
		return NULL;
	if (fgets(str, num, ld->fp) == NULL)
		return NULL;
	ld->line++;
	n = strlen(str);
	if (n > 0 && str[n - 1] != '\n' && !feof(ld->fp)) {
		/* inih would silently cut the line: refuse it instead. */
		ld->overlong = true;
		if (ld->error == 0) {
			ld->error = MR_ETOOLONG;
			mr_buf_printf(ld->err, "%s:%u: line longer than %d "
			    "characters", ld->path, ld->line, num - 2);
		}
		return NULL;
	}
	n = strspn(str, " \t");
	if (str[n] == '[')
		ld->header_line = ld->line;
	return str;
}

/*
 * conf_section_arg - the argument of a "[KIND ARG]" header, trimmed; NULL
 * (and the error set) when there is none.
 */
static const char *
conf_section_arg(struct conf_loader *ld, const char *kind, const char *arg,
    const char *example)
{
	while (*arg == ' ' || *arg == '\t')
		arg++;
	if (*arg != '\0')
		return arg;
	ld->error = MR_EINVAL_INPUT;
	mr_buf_printf(ld->err, "%s:%u: [%s] needs a name: [%s %s]", ld->path,
	    ld->line, kind, kind, example);
	return NULL;
}

/* conf_section_twice - the error for a section header met again (its
 * second part would never be used). */
static int
conf_section_twice(struct conf_loader *ld, const char *kind, const char *arg,
    const char *first)
{
	ld->error = MR_EINVAL_INPUT;
	mr_buf_printf(ld->err, "%s:%u: [%s %s] appears twice (first at %s)",
	    ld->path, ld->line, kind, arg, first);
	return 1;
}

/* conf_section_where - "file:line" of the section being read. */
static char *
conf_section_where(struct conf_loader *ld)
{
	struct mr_buf b = MR_BUF_INIT;

	mr_buf_printf(&b, "%s:%u", ld->path, ld->header_line);
	return b.data;
}

/* conf_dest_handler - a key of a [destination PATTERN] section. */
static int
conf_dest_handler(struct conf_loader *ld, const char *pattern,
    const char *name, const char *value)
{
	struct mr_config *cfg = ld->cfg;
	struct conf_dest *d;
	struct mr_buf msg = MR_BUF_INIT;
	size_t i;
	int r;

	if ((pattern = conf_section_arg(ld, "destination", pattern,
	    "*.example.com")) == NULL)
		return 1;
	d = cfg->shaping_ndests ? &cfg->shaping_dests[cfg->shaping_ndests -
	    1] : NULL;
	if (d == NULL || ld->dest_line != ld->header_line) {
		for (i = 0; i < cfg->shaping_ndests; i++)
			if (strcasecmp(cfg->shaping_dests[i].pattern,
			    pattern) == 0)
				return conf_section_twice(ld, "destination",
				    pattern, cfg->shaping_dests[i].where);
		cfg->shaping_dests = xreallocarray(cfg->shaping_dests,
		    cfg->shaping_ndests + 1, sizeof(*cfg->shaping_dests));
		d = &cfg->shaping_dests[cfg->shaping_ndests++];
		memset(d, 0, sizeof(*d));
		d->pattern = xstrdup(pattern);
		for (i = 0; d->pattern[i]; i++)
			d->pattern[i] = (char)tolower((unsigned char)
			    d->pattern[i]);
		d->where = conf_section_where(ld);
		d->max_connections = d->initial_connections = -1;
		d->messages_per_connection = d->max_message_rate = -1;
		d->max_messages_per_hour = d->max_connection_rate = -1;
		d->adaptive = -1;
		ld->dest_line = ld->header_line;
	}
	r = conf_dest_key(d, name, value, &msg);
	if (r != 0) {
		ld->error = r;
		mr_buf_printf(ld->err, "%s:%u: [destination %s] %s", ld->path,
		    ld->line, d->pattern, mr_buf_cstr(&msg));
	}
	mr_buf_release(&msg);
	return 1;
}

/* conf_pool_handler - a key of a [pool NAME] section. */
static int
conf_pool_handler(struct conf_loader *ld, const char *pool,
    const char *name, const char *value)
{
	struct mr_config *cfg = ld->cfg;
	const struct conf_pool *other;
	struct conf_pool *pl;
	struct mr_buf msg = MR_BUF_INIT;
	int r;

	if ((pool = conf_section_arg(ld, "pool", pool, "bulk")) == NULL)
		return 1;
	pl = cfg->npools ? &cfg->pools[cfg->npools - 1] : NULL;
	if (pl == NULL || ld->pool_line != ld->header_line) {
		if ((other = conf_pool_find(cfg, pool)) != NULL)
			return conf_section_twice(ld, "pool", pool,
			    other->where);
		cfg->pools = xreallocarray(cfg->pools, cfg->npools + 1,
		    sizeof(*cfg->pools));
		pl = &cfg->pools[cfg->npools++];
		memset(pl, 0, sizeof(*pl));
		pl->name = xstrdup(pool);
		pl->where = conf_section_where(ld);
		ld->pool_line = ld->header_line;
	}
	r = conf_pool_key(cfg, pl, name, value, &msg);
	if (r != 0) {
		ld->error = r;
		mr_buf_printf(ld->err, "%s:%u: [pool %s] %s", ld->path,
		    ld->line, pl->name, mr_buf_cstr(&msg));
	}
	mr_buf_release(&msg);
	return 1;
}

static int
conf_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct conf_loader *ld = user;
	const struct conf_param *p;
	struct mr_buf msg = MR_BUF_INIT;
	size_t idx;
	int r;

	if (ld->error != 0)
		return 1;
	if (strncasecmp(section, "destination", 11) == 0 &&
	    (section[11] == ' ' || section[11] == '\t'))
		return conf_dest_handler(ld, section + 12, name, value);
	if (strncasecmp(section, "pool", 4) == 0 &&
	    (section[4] == ' ' || section[4] == '\t' || section[4] == '\0'))
		return conf_pool_handler(ld, section + 4, name, value);
	p = conf_lookup(section, name);
	if (p == NULL) {
		ld->error = MR_EUNKNOWN_KEY;
		if (*section == '\0')
			mr_buf_printf(ld->err, "%s:%u: key \"%s\" outside a "
			    "[section]", ld->path, ld->line, name);
		else
			mr_buf_printf(ld->err, "%s:%u: unknown key \"%s\" in "
			    "[%s]", ld->path, ld->line, name, section);
		return 1;
	}
	idx = (size_t)(p - conf_params);
	if (ld->seen[idx] && p->type != CONF_LIST) {
		ld->error = MR_EINVAL_INPUT;
		mr_buf_printf(ld->err, "%s:%u: %s.%s is set twice", ld->path,
		    ld->line, p->section, p->name);
		return 1;
	}
	r = conf_assign(ld->cfg, p, value, ld->seen[idx], &msg);
	ld->seen[idx] = true;
	if (r != 0) {
		ld->error = r;
		mr_buf_printf(ld->err, "%s:%u: %s", ld->path, ld->line,
		    mr_buf_cstr(&msg));
	}
	mr_buf_release(&msg);
	return 1;
}

int
conf_load_file(struct mr_config *cfg, const char *path, struct mr_buf *err)
{
	struct conf_loader ld;
	size_t i;
	int r;

	memset(&ld, 0, sizeof(ld));
	ld.cfg = cfg;
	ld.path = path;
	ld.err = err;
	ld.fp = fopen(path, "re");
	if (ld.fp == NULL) {
		r = -errno;
		mr_buf_printf(err, "%s: cannot open configuration: %s", path,
		    mr_strerror(r));
		return r;
	}
	r = ini_parse_stream(conf_reader, &ld, conf_handler, &ld);
	if (ferror(ld.fp) && ld.error == 0) {
		ld.error = -EIO;
		mr_buf_printf(err, "%s: read error", path);
	}
	fclose(ld.fp);
	if (ld.error != 0)
		return ld.error;
	for (i = 0; r == 0 && i < cfg->npools; i++) {
		if (cfg->pools[i].source.n == 0) {
			mr_buf_printf(err, "%s: [pool %s] has no source "
			    "address", cfg->pools[i].where,
			    cfg->pools[i].name);
			return MR_EINVAL_INPUT;
		}
	}
	if (r != 0) {
		/* inih found a syntax error (no '=', unclosed section). */
		mr_buf_printf(err, "%s:%d: syntax error (expected [section] "
		    "or key = value)", path, r);
		return MR_EINVAL_INPUT;
	}
	return 0;
}

int
conf_set(struct mr_config *cfg, const char *key, const char *value,
    struct mr_buf *err)
{
	const struct conf_param *p;
	char section[64];
	const char *dot = strchr(key, '.');
	size_t idx, n;
	int r;

	n = dot ? (size_t)(dot - key) : 0;
	if (dot == NULL || n >= sizeof(section)) {
		mr_buf_printf(err, "%s: expected section.key", key);
		return MR_EUNKNOWN_KEY;
	}
	memcpy(section, key, n);
	section[n] = '\0';
	p = conf_lookup(section, dot + 1);
	if (p == NULL) {
		mr_buf_printf(err, "unknown configuration key \"%s\"", key);
		return MR_EUNKNOWN_KEY;
	}
	idx = (size_t)(p - conf_params);
	r = conf_assign(cfg, p, value, conf_overridden[idx], err);
	conf_overridden[idx] = true;
	return r;
}

int
conf_finish(struct mr_config *cfg, struct mr_buf *err)
{
	unsigned mask;
	char host[256];

	if (mr_log_parse_trace(cfg->general_log_trace, &mask) != 0) {
		mr_buf_printf(err, "general.log_trace: \"%s\" names an unknown "
		    "category (smtp, dns, queue, tls, conf, all)",
		    cfg->general_log_trace);
		return MR_EINVAL_INPUT;
	}
	if (*cfg->general_hostname == '\0') {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		free(cfg->general_hostname);
		cfg->general_hostname = xstrdup(host);
	}
	if (*cfg->send_message_id_domain == '\0') {
		free(cfg->send_message_id_domain);
		cfg->send_message_id_domain = xstrdup(cfg->general_hostname);
	}
	if (cfg->queue_retry_max_interval < cfg->queue_retry_base) {
		mr_buf_printf(err, "queue.retry_max_interval (%lldms) is "
		    "shorter than queue.retry_base (%lldms)",
		    cfg->queue_retry_max_interval, cfg->queue_retry_base);
		return MR_ERANGE_VALUE;
	}
	if (cfg->recovery_chunk_size % 64 != 0) {
		mr_buf_printf(err, "recovery.chunk_size (%lld) is not a "
		    "multiple of 64", cfg->recovery_chunk_size);
		return MR_ERANGE_VALUE;
	}
	if (*cfg->recovery_journal_dir == '\0') {
		struct mr_buf b = MR_BUF_INIT;

		mr_buf_printf(&b, "%s.journal", cfg->store_path);
		free(cfg->recovery_journal_dir);
		cfg->recovery_journal_dir = b.data;
	}
	if (cfg->dns_max_ttl < cfg->dns_min_ttl) {
		mr_buf_printf(err, "dns.max_ttl is shorter than dns.min_ttl");
		return MR_ERANGE_VALUE;
	}
	if (cfg->governor_min_slots > cfg->governor_max_slots ||
	    cfg->governor_initial_slots < cfg->governor_min_slots ||
	    cfg->governor_initial_slots > cfg->governor_max_slots) {
		mr_buf_printf(err, "governor: initial_slots (%lld) must lie "
		    "between min_slots (%lld) and max_slots (%lld)",
		    cfg->governor_initial_slots, cfg->governor_min_slots,
		    cfg->governor_max_slots);
		return MR_ERANGE_VALUE;
	}
	if (cfg->queue_retry_dfr_low > cfg->queue_retry_dfr_high ||
	    cfg->queue_retry_utilization_low >
	    cfg->queue_retry_utilization_high) {
		mr_buf_printf(err, "queue: retry_dfr_low and "
		    "retry_utilization_low must not exceed their _high "
		    "counterparts");
		return MR_ERANGE_VALUE;
	}
	return 0;
}

static void
conf_format_value(const struct conf_param *p, const void *field,
    struct mr_buf *out)
{
	const struct conf_list *l;
	long long v;
	size_t i;

	switch (p->type) {
	case CONF_INT:
		mr_buf_printf(out, "%lld", *(const long long *)field);
		break;
	case CONF_DURATION:
		v = *(const long long *)field;
		if (v % 86400000 == 0 && v)
			mr_buf_printf(out, "%lldd", v / 86400000);
		else if (v % 3600000 == 0 && v)
			mr_buf_printf(out, "%lldh", v / 3600000);
		else if (v % 60000 == 0 && v)
			mr_buf_printf(out, "%lldm", v / 60000);
		else if (v % 1000 == 0)
			mr_buf_printf(out, "%llds", v / 1000);
		else
			mr_buf_printf(out, "%lldms", v);
		break;
	case CONF_SIZE:
		v = *(const long long *)field;
		if (v % (1LL << 30) == 0 && v)
			mr_buf_printf(out, "%lldG", v >> 30);
		else if (v % (1LL << 20) == 0 && v)
			mr_buf_printf(out, "%lldM", v >> 20);
		else if (v % (1LL << 10) == 0 && v)
			mr_buf_printf(out, "%lldk", v >> 10);
		else
			mr_buf_printf(out, "%lld", v);
		break;
	case CONF_BOOL:
		mr_buf_puts(out, *(const bool *)field ? "yes" : "no");
		break;
	case CONF_RATE:
		v = *(const long long *)field;
		if (v % 3600 == 0 && v)
			mr_buf_printf(out, "%lld/s", v / 3600);
		else if (v % 60 == 0 && v)
			mr_buf_printf(out, "%lld/m", v / 60);
		else
			mr_buf_printf(out, "%lld/h", v);
		break;
	case CONF_ENUM:
		mr_buf_puts(out, p->choices[*(const int *)field]);
		break;
	case CONF_STRING:
		mr_buf_puts(out, *(char *const *)field);
		break;
	case CONF_LIST:
		l = field;
		for (i = 0; i < l->n; i++)
			mr_buf_printf(out, "%s%s", i ? "\n" : "", l->v[i]);
		break;
	}
}

static const char *
conf_type_name(enum conf_type t)
{
	switch (t) {
	case CONF_INT:
		return "integer";
	case CONF_DURATION:
		return "duration";
	case CONF_SIZE:
		return "size";
	case CONF_BOOL:
		return "boolean";
	case CONF_STRING:
		return "string";
	case CONF_ENUM:
		return "choice";
	case CONF_LIST:
		return "list (repeat the key)";
	case CONF_RATE:
		return "rate";
	}
	return "?";
}

void
conf_write_doc(FILE *fp)
{
	struct mr_buf b = MR_BUF_INIT;
	const char *section = "";
	size_t i, j;

	fputs("# Configuration reference\n\n"
	    "Generated by `mailroom config --doc` from the parameter table "
	    "in\n`src/conf/conf_params.c`; a test keeps this file identical "
	    "to its output.\n\n"
	    "The file is INI: `[section]` headers, `key = value` lines, `#` "
	    "or `;`\ncomments at the start of a line. An unknown key, a value "
	    "out of bounds or\na key set twice stops the program at start-up "
	    "with the file and line.\nDurations take the units ms, s, m, h, d "
	    "(a bare number is seconds);\nsizes take k, M, G (a bare number is "
	    "bytes); rates take /s, /m, /h (a bare number is per hour). Any "
	    "key can\nalso be set on the command line with "
	    "`-o section.key=value`, which wins\nover the file.\n\n"
	    "`[destination PATTERN]` sections override the [shaping] limits "
	    "for the\ndestinations whose domain or MX host name matches the "
	    "glob PATTERN (the\nfirst matching section wins). Their keys: "
	    "`max_connections`,\n`initial_connections`, "
	    "`messages_per_connection`, `max_message_rate`,\n"
	    "`max_messages_per_hour`, `max_connection_rate`, `adaptive` and "
	    "`rule`\n(repeatable), with the meanings of the same keys in "
	    "[smtp] and [shaping].\n\n"
	    "`[pool NAME]` sections are source address pools: `source` "
	    "(repeatable, an\nIPv4 or IPv6 address of this host) lists the "
	    "addresses, and `account`\nand `campaign` (repeatable) name the "
	    "sending accounts and campaigns whose\nmail goes out from them, "
	    "in turn; each source has its own limits per\ndestination. "
	    "`send.pool` picks a pool for one run. Everything else goes\n"
	    "out from `shaping.source`.\n", fp);
	for (i = 0; i < conf_nparams; i++) {
		const struct conf_param *p = &conf_params[i];

		if (strcmp(section, p->section) != 0) {
			section = p->section;
			fprintf(fp, "\n## [%s]\n\n", section);
			fputs("| key | type | default | bounds | meaning |\n"
			    "|---|---|---|---|---|\n", fp);
		}
		mr_buf_reset(&b);
		switch (p->type) {
		case CONF_INT:
			mr_buf_printf(&b, "%lld … %lld", p->min, p->max);
			break;
		case CONF_DURATION:
		case CONF_SIZE:
		case CONF_RATE: {
			struct mr_config tmp;
			long long *f = (long long *)((char *)&tmp +
			    p->offset);

			*f = p->min;
			conf_format_value(p, f, &b);
			mr_buf_puts(&b, " … ");
			*f = p->max;
			conf_format_value(p, f, &b);
			break;
		}
		case CONF_ENUM:
			for (j = 0; p->choices[j]; j++)
				mr_buf_printf(&b, "%s`%s`", j ? ", " : "",
				    p->choices[j]);
			break;
		case CONF_BOOL:
			mr_buf_puts(&b, "yes, no");
			break;
		default:
			mr_buf_puts(&b, "—");
			break;
		}
		fprintf(fp, "| `%s` | %s | %s%s%s | %s | %s |\n", p->name,
		    conf_type_name(p->type), *p->def ? "`" : "",
		    *p->def ? p->def : "(empty)", *p->def ? "`" : "",
		    mr_buf_cstr(&b), p->doc);
	}
	mr_buf_release(&b);
}

/* conf_is_secret - parameters named *_secret hold credentials. */
static bool
conf_is_secret(const struct conf_param *p)
{
	size_t n = strlen(p->name);

	return n >= 6 && strcmp(p->name + n - 6, "secret") == 0;
}

void
conf_write_effective(const struct mr_config *cfg, FILE *fp)
{
	struct mr_buf b = MR_BUF_INIT;
	const char *section = "";
	const struct conf_list *l;
	size_t i, j;

	for (i = 0; i < conf_nparams; i++) {
		const struct conf_param *p = &conf_params[i];

		if (strcmp(section, p->section) != 0) {
			section = p->section;
			fprintf(fp, "%s[%s]\n", i ? "\n" : "", section);
		}
		if (p->type == CONF_LIST) {
			l = conf_cfield(cfg, p);
			if (l->n == 0)
				fprintf(fp, "# %s =\n", p->name);
			for (j = 0; j < l->n; j++)
				fprintf(fp, "%s = %s\n", p->name, l->v[j]);
			continue;
		}
		mr_buf_reset(&b);
		conf_format_value(p, conf_cfield(cfg, p), &b);
		/* A secret is never shown: not on a terminal, not in a log. */
		if (conf_is_secret(p) && b.len > 0) {
			fprintf(fp, "# %s = (set, not shown)\n", p->name);
			continue;
		}
		fprintf(fp, "%s = %s\n", p->name, mr_buf_cstr(&b));
	}
	for (i = 0; i < cfg->shaping_ndests; i++)
		conf_dest_write(&cfg->shaping_dests[i], fp);
	for (i = 0; i < cfg->npools; i++)
		conf_pool_write(&cfg->pools[i], fp);
	mr_buf_release(&b);
}
