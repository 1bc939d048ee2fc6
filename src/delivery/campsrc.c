/*
 * campsrc.c - a campaign as a message source: each call parses the
 * recipient's row again from the mapping (cheaper than keeping every
 * field), with the loop's own parser.
 */
#include <stdlib.h>

#include <event2/buffer.h>

#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/campsrc.h"
#include "delivery/csv.h"

struct msgsrc_scratch {
	struct csv_parser	*cp;
	struct tmpl_scratch	*ts;
};

static struct msgsrc_scratch *
campsrc_scratch_new(void *arg)
{
	struct campsrc *cs = arg;
	struct msgsrc_scratch *sc = xcalloc(1, sizeof(*sc));

	sc->cp = csv_parser_new(cs->max_row);
	sc->ts = tmpl_scratch_new();
	return sc;
}

static void
campsrc_scratch_free(void *arg, struct msgsrc_scratch *sc)
{
	(void)arg;
	if (sc == NULL)
		return;
	csv_parser_free(&sc->cp);
	tmpl_scratch_free(&sc->ts);
	free(sc);
}

static uint32_t
campsrc_domain(void *arg, uint32_t r)
{
	return list_domain(((struct campsrc *)arg)->list, r);
}

static const char *
campsrc_domain_name(void *arg, uint32_t id)
{
	return list_domain_name(((struct campsrc *)arg)->list, id);
}

static void
campsrc_address(void *arg, struct msgsrc_scratch *sc, uint32_t r,
    const char **p_r, size_t *n_r)
{
	struct campsrc *cs = arg;
	const struct csv_field *f;
	size_t nf;

	f = list_fields(cs->list, sc->cp, r, &nf);
	MR_ASSERT(f != NULL);
	list_email(cs->list, f, p_r, n_r);
}

static unsigned
campsrc_line(void *arg, uint32_t r)
{
	return list_line(((struct campsrc *)arg)->list, r);
}

static uint64_t
campsrc_fingerprint(void *arg, uint32_t r)
{
	return list_fingerprint(((struct campsrc *)arg)->list, r);
}

static const char *
campsrc_mail_from(void *arg, uint32_t r)
{
	(void)r;
	return ((struct campsrc *)arg)->mail_from;
}

static int
campsrc_render(void *arg, struct msgsrc_scratch *sc, uint32_t r,
    const struct msgsrc_stamp *st, bool stuff, struct evbuffer *out,
    size_t *size_r, bool *eight_r, const char **why_r)
{
	struct campsrc *cs = arg;
	const struct csv_field *f;
	struct tmpl_msg m;
	size_t nf;

	(void)why_r;
	f = list_fields(cs->list, sc->cp, r, &nf);
	MR_ASSERT(f != NULL);
	m.message_id = st->message_id;
	m.date = st->date;
	*size_r = tmpl_render(cs->tmpl, sc->ts, f, nf, &m, stuff ?
	    TMPL_DOT_STUFF : 0, out, eight_r);
	return 0;
}

static const struct msgsrc_ops campsrc_ops = {
	.scratch_new = campsrc_scratch_new,
	.scratch_free = campsrc_scratch_free,
	.domain = campsrc_domain,
	.domain_name = campsrc_domain_name,
	.address = campsrc_address,
	.line = campsrc_line,
	.fingerprint = campsrc_fingerprint,
	.mail_from = campsrc_mail_from,
	.render = campsrc_render,
	.final = NULL,
	.stamps = true,
};

void
campsrc_init(struct campsrc *cs, struct msgsrc *src)
{
	src->ops = &campsrc_ops;
	src->arg = cs;
}
