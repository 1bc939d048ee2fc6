/*
 * mr_err.h - error codes shared by every module.
 *
 * Convention (house style rule 15): a function returning int returns 0 on
 * success or a negative error code; a function returning a pointer returns
 * NULL and stores the code in its err_r out-parameter.  Codes between -1 and
 * -4095 are negated errno values (so -ENOENT passes through unchanged); the
 * MR_E* codes below lie outside that range.
 */
#ifndef MR_ERR_H
#define MR_ERR_H

enum {
	MR_EINVAL_INPUT = -5000,	/* malformed input (a parser said no) */
	MR_ETOOLONG,			/* a line or field over its limit */
	MR_EAGAIN_INPUT,		/* need more input (resumable parsers) */
	MR_ERANGE_VALUE,		/* a value outside its bounds */
	MR_EUNKNOWN_KEY,		/* configuration key not declared */
	MR_EEMPTY,			/* nothing to work on */
	MR_EPROTO,			/* peer broke the protocol */
	MR_ETIMEOUT,			/* a protocol timer fired */
	MR_ECLOSED,			/* peer closed the connection */
	MR_ETLS,			/* TLS negotiation or verification */
	MR_EDNS_TEMP,			/* DNS lookup failed, try again later */
	MR_EDNS_NXDOMAIN,		/* the domain does not exist */
	MR_EDNS_NULLMX,			/* the domain accepts no mail (RFC 7505) */
	MR_EDNS_NOADDR,			/* a host name has no address */
	MR_ELAST_
};

/*
 * mr_strerror - a fixed description of code (MR_E* or a negated errno).
 * Returns a static string; thread-safe.
 */
const char *mr_strerror(int code);

#endif
