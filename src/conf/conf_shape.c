/*
 * conf_shape.c - the shaping parts of the configuration that do not fit
 * the one-key-one-field table: response rules ("ACTION [DURATION]
 * REGEX") and [destination PATTERN] sections.  Rules are compiled here
 * once to refuse a bad regex at start-up with its file and line; the
 * delivery side compiles its own copy (regex_t is not shared between
 * threads that match concurrently on every platform).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_int.h"
#include "core/mr_err.h"
#include "core/xalloc.h"

static const char *const conf_shape_actions[] = {
	"throttle", "backoff", "suspend", NULL,
};

int
conf_parse_shape_rule(const char *s, struct conf_shape_rule *r,
    struct mr_buf *err)
{
	char word[32], *dur;
	const char *p = s;
	size_t n, i;
	regex_t re;
	int rc;

	memset(r, 0, sizeof(*r));
	while (isspace((unsigned char)*p))
		p++;
	for (n = 0; p[n] && !isspace((unsigned char)p[n]); n++)
		;
	if (n == 0 || n >= sizeof(word))
		goto syntax;
	memcpy(word, p, n);
	word[n] = '\0';
	p += n;
	for (i = 0; conf_shape_actions[i]; i++)
		if (strcasecmp(word, conf_shape_actions[i]) == 0)
			break;
	if (conf_shape_actions[i] == NULL)
		goto syntax;
	r->action = (int)i;
	while (isspace((unsigned char)*p))
		p++;
	if (r->action != CONF_SHAPE_THROTTLE) {
		for (n = 0; p[n] && !isspace((unsigned char)p[n]); n++)
			;
		dur = xstrndup(p, n);
		rc = n ? conf_parse_duration(dur, &r->ms) : MR_EINVAL_INPUT;
		free(dur);
		if (rc != 0 || r->ms <= 0) {
			mr_buf_printf(err, "rule \"%s\": %s needs a duration "
			    "greater than 0 (e.g. %s 5m REGEX)", s, word, word);
			return MR_EINVAL_INPUT;
		}
		p += n;
		while (isspace((unsigned char)*p))
			p++;
	}
	if (*p == '\0')
		goto syntax;
	rc = regcomp(&re, p, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (rc != 0) {
		char why[128];

		regerror(rc, &re, why, sizeof(why));
		mr_buf_printf(err, "rule \"%s\": bad regular expression: %s",
		    s, why);
		return MR_EINVAL_INPUT;
	}
	regfree(&re);
	r->regex = xstrdup(p);
	return 0;
syntax:
	mr_buf_printf(err, "rule \"%s\": expected \"throttle REGEX\", "
	    "\"backoff DURATION REGEX\" or \"suspend DURATION REGEX\"", s);
	return MR_EINVAL_INPUT;
}

void
conf_shape_rule_release(struct conf_shape_rule *r)
{
	free(r->regex);
	r->regex = NULL;
}

/* conf_dest_number - a limit: an integer, or a rate; never negative. */
static int
conf_dest_number(const char *key, const char *value, bool rate,
    long long max, long long *out, struct mr_buf *err)
{
	long long n;
	int r;

	if (rate) {
		r = conf_parse_rate(value, &n);
	} else {
		char *end;

		n = strtoll(value, &end, 10);
		r = (end == value || *end != '\0') ? MR_EINVAL_INPUT : 0;
	}
	if (r == 0 && (n < 0 || n > max))
		r = MR_ERANGE_VALUE;
	if (r != 0) {
		mr_buf_printf(err, "%s: bad value \"%s\": expected %s from 0 "
		    "to %lld", key, value, rate ? "a rate (N/s, N/m, N/h)" :
		    "an integer", max);
		return r;
	}
	*out = n;
	return 0;
}

int
conf_dest_key(struct conf_dest *d, const char *key, const char *value,
    struct mr_buf *err)
{
	struct conf_shape_rule rule;
	bool b;
	int r;

	if (strcasecmp(key, "max_connections") == 0)
		return conf_dest_number(key, value, false, 10000,
		    &d->max_connections, err);
	if (strcasecmp(key, "initial_connections") == 0)
		return conf_dest_number(key, value, false, 10000,
		    &d->initial_connections, err);
	if (strcasecmp(key, "messages_per_connection") == 0)
		return conf_dest_number(key, value, false, 100000000,
		    &d->messages_per_connection, err);
	if (strcasecmp(key, "max_message_rate") == 0)
		return conf_dest_number(key, value, true, 1000000000,
		    &d->max_message_rate, err);
	if (strcasecmp(key, "max_messages_per_hour") == 0)
		return conf_dest_number(key, value, false, 1000000000,
		    &d->max_messages_per_hour, err);
	if (strcasecmp(key, "max_connection_rate") == 0)
		return conf_dest_number(key, value, true, 1000000000,
		    &d->max_connection_rate, err);
	if (strcasecmp(key, "adaptive") == 0) {
		if (conf_parse_bool(value, &b) != 0) {
			mr_buf_printf(err, "adaptive: bad value \"%s\": "
			    "expected yes or no", value);
			return MR_EINVAL_INPUT;
		}
		d->adaptive = b;
		return 0;
	}
	if (strcasecmp(key, "rule") == 0) {
		r = conf_parse_shape_rule(value, &rule, err);
		if (r != 0)
			return r;
		conf_shape_rule_release(&rule);
		d->rules.v = xreallocarray(d->rules.v, d->rules.n + 1,
		    sizeof(*d->rules.v));
		d->rules.v[d->rules.n++] = xstrdup(value);
		return 0;
	}
	mr_buf_printf(err, "unknown key \"%s\" (max_connections, "
	    "initial_connections, messages_per_connection, max_message_rate, "
	    "max_messages_per_hour, max_connection_rate, adaptive, rule)", key);
	return MR_EUNKNOWN_KEY;
}

static void
conf_list_free(struct conf_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

void
conf_dest_release(struct conf_dest *d)
{
	conf_list_free(&d->rules);
	free(d->pattern);
	free(d->where);
	memset(d, 0, sizeof(*d));
}

void
conf_dest_write(const struct conf_dest *d, FILE *fp)
{
	size_t i;

	fprintf(fp, "\n[destination %s]\n", d->pattern);
	if (d->max_connections >= 0)
		fprintf(fp, "max_connections = %lld\n", d->max_connections);
	if (d->initial_connections >= 0)
		fprintf(fp, "initial_connections = %lld\n",
		    d->initial_connections);
	if (d->messages_per_connection >= 0)
		fprintf(fp, "messages_per_connection = %lld\n",
		    d->messages_per_connection);
	if (d->max_message_rate >= 0)
		fprintf(fp, "max_message_rate = %lld/h\n", d->max_message_rate);
	if (d->max_messages_per_hour >= 0)
		fprintf(fp, "max_messages_per_hour = %lld\n",
		    d->max_messages_per_hour);
	if (d->max_connection_rate >= 0)
		fprintf(fp, "max_connection_rate = %lld/h\n",
		    d->max_connection_rate);
	if (d->adaptive >= 0)
		fprintf(fp, "adaptive = %s\n", d->adaptive ? "yes" : "no");
	for (i = 0; i < d->rules.n; i++)
		fprintf(fp, "rule = %s\n", d->rules.v[i]);
}

const struct conf_dest *
conf_dest_match(const struct mr_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->shaping_ndests; i++)
		if (fnmatch(cfg->shaping_dests[i].pattern, name,
		    FNM_CASEFOLD) == 0)
			return &cfg->shaping_dests[i];
	return NULL;
}

/* conf_pool_names - whether list l holds name (case-insensitive). */
static bool
conf_pool_names(const struct conf_list *l, const char *name)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i], name) == 0)
			return true;
	return false;
}

static void
conf_pool_add(struct conf_list *l, const char *value)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(value);
}

int
conf_pool_key(const struct mr_config *cfg, struct conf_pool *pl,
    const char *key, const char *value, struct mr_buf *err)
{
	unsigned char a[sizeof(struct in6_addr)];
	bool account;
	size_t i;

	if (strcasecmp(key, "source") == 0) {
		if (inet_pton(AF_INET, value, a) != 1 &&
		    inet_pton(AF_INET6, value, a) != 1) {
			mr_buf_printf(err, "source: \"%s\" is not an IPv4 or "
			    "IPv6 address", value);
			return MR_EINVAL_INPUT;
		}
		if (conf_pool_names(&pl->source, value)) {
			mr_buf_printf(err, "source %s is listed twice", value);
			return MR_EINVAL_INPUT;
		}
		conf_pool_add(&pl->source, value);
		return 0;
	}
	account = strcasecmp(key, "account") == 0;
	if (!account && strcasecmp(key, "campaign") != 0) {
		mr_buf_printf(err, "unknown key \"%s\" (source, account, "
		    "campaign)", key);
		return MR_EUNKNOWN_KEY;
	}
	if (*value == '\0') {
		mr_buf_printf(err, "%s: a name is needed", key);
		return MR_EINVAL_INPUT;
	}
	for (i = 0; i < cfg->npools; i++) {
		const struct conf_pool *o = &cfg->pools[i];

		if (conf_pool_names(account ? &o->account : &o->campaign,
		    value)) {
			mr_buf_printf(err, "%s %s is already in [pool %s] "
			    "(%s)", key, value, o->name, o->where);
			return MR_EINVAL_INPUT;
		}
	}
	conf_pool_add(account ? &pl->account : &pl->campaign, value);
	return 0;
}

void
conf_pool_release(struct conf_pool *pl)
{
	conf_list_free(&pl->source);
	conf_list_free(&pl->account);
	conf_list_free(&pl->campaign);
	free(pl->name);
	free(pl->where);
	memset(pl, 0, sizeof(*pl));
}

void
conf_pool_write(const struct conf_pool *pl, FILE *fp)
{
	size_t i;

	fprintf(fp, "\n[pool %s]\n", pl->name);
	for (i = 0; i < pl->source.n; i++)
		fprintf(fp, "source = %s\n", pl->source.v[i]);
	for (i = 0; i < pl->account.n; i++)
		fprintf(fp, "account = %s\n", pl->account.v[i]);
	for (i = 0; i < pl->campaign.n; i++)
		fprintf(fp, "campaign = %s\n", pl->campaign.v[i]);
}

const struct conf_pool *
conf_pool_find(const struct mr_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->npools; i++)
		if (strcasecmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

const struct conf_pool *
conf_pool_for(const struct mr_config *cfg, const char *campaign,
    const char *account)
{
	if (cfg->send_pool != NULL && *cfg->send_pool != '\0')
		return conf_pool_find(cfg, cfg->send_pool);
	return conf_pool_naming(cfg, campaign, account);
}

const struct conf_pool *
conf_pool_naming(const struct mr_config *cfg, const char *campaign,
    const char *account)
{
	size_t i;

	for (i = 0; campaign != NULL && *campaign && i < cfg->npools; i++)
		if (conf_pool_names(&cfg->pools[i].campaign, campaign))
			return &cfg->pools[i];
	for (i = 0; account != NULL && *account && i < cfg->npools; i++)
		if (conf_pool_names(&cfg->pools[i].account, account))
			return &cfg->pools[i];
	return NULL;
}
