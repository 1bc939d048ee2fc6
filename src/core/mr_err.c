/*
 * mr_err.c - descriptions of the error codes in mr_err.h.
 */
#include <string.h>

#include "mr_err.h"

static const char *const mr_err_text[] = {
	"invalid input",
	"too long",
	"more input needed",
	"value out of range",
	"unknown configuration key",
	"empty input",
	"protocol error",
	"timed out",
	"connection closed by peer",
	"TLS failure",
	"temporary DNS failure",
	"domain does not exist",
	"domain accepts no mail (null MX)",
	"host has no address",
};

const char *
mr_strerror(int code)
{
	if (code >= MR_EINVAL_INPUT && code < MR_ELAST_)
		return mr_err_text[code - MR_EINVAL_INPUT];
	if (code < 0 && code > -4096)
		return strerrordesc_np(-code) ? strerrordesc_np(-code)
		    : "unknown system error";
	return code == 0 ? "success" : "unknown error";
}
