/*
 * campsrc.h - the message source of a campaign (see msgsrc.h): recipients
 * are rows of the mapped list, messages the template rendered with each
 * row's fields.  The list and template are borrowed and must outlive the
 * source; both are immutable, so the source is safe for any number of
 * delivery loops, each with its own scratch (a CSV parser and a template
 * scratch).
 */
#ifndef MR_CAMPSRC_H
#define MR_CAMPSRC_H

#include "delivery/list.h"
#include "delivery/msgsrc.h"
#include "delivery/template.h"

struct campsrc {
	const struct list	*list;
	const struct tmpl	*tmpl;
	const char		*mail_from;
	size_t			 max_row;
};

/* campsrc_init - src describes cs (which must outlive it). */
void campsrc_init(struct campsrc *cs, struct msgsrc *src);

#endif
