/*
 * conf_int.h - the parameter table, shared by conf.c and conf_params.c
 * only (and unit tests).
 */
#ifndef MR_CONF_INT_H
#define MR_CONF_INT_H

#include <stddef.h>

#include <stdio.h>

#include "conf.h"

enum conf_type {
	CONF_INT,	/* long long, plain number */
	CONF_DURATION,	/* long long milliseconds: 250ms, 30s, 5m, 2h, 1d */
	CONF_SIZE,	/* long long bytes: 512, 64k, 10M, 1G */
	CONF_BOOL,	/* bool: yes/no, true/false, on/off, 1/0 */
	CONF_STRING,	/* char *, owned */
	CONF_ENUM,	/* int, index into choices */
	CONF_LIST,	/* struct conf_list: the key may repeat */
	CONF_RATE,	/* long long per hour: 20/s, 300/m, 5000/h */
};

struct conf_param {
	const char		*section;
	const char		*name;
	enum conf_type		 type;
	const char		*def;		/* default, as written in a file */
	long long		 min, max;	/* numeric bounds, inclusive */
	const char *const	*choices;	/* CONF_ENUM: NULL-terminated */
	size_t			 offset;	/* into struct mr_config */
	const char		*doc;		/* one or two sentences */
};

extern const struct conf_param conf_params[];
extern const size_t conf_nparams;

/* conf_dest_key - parse key = value of a [destination] section into d. */
int conf_dest_key(struct conf_dest *d, const char *key, const char *value,
    struct mr_buf *err);
void conf_dest_release(struct conf_dest *d);
void conf_dest_write(const struct conf_dest *d, FILE *fp);

/* conf_pool_key - parse key = value of a [pool] section into pl; the
 * other pools (cfg's, pl excluded) for the one-pool-per-name check. */
int conf_pool_key(const struct mr_config *cfg, struct conf_pool *pl,
    const char *key, const char *value, struct mr_buf *err);
void conf_pool_release(struct conf_pool *pl);
void conf_pool_write(const struct conf_pool *pl, FILE *fp);

#endif
