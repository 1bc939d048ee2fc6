/*
 * main.c - mailroom: one program, a subcommand per job (SPEC X1).
 * Dispatch only; each subcommand lives with its subsystem.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <event2/thread.h>

#include "commands.h"

static int main_version(int argc, char **argv);
static int main_help(int argc, char **argv);

static const struct {
	const char	*name;
	int		(*run)(int, char **);
	const char	*summary;
} main_commands[] = {
	{ "send", send_cmd,
	  "deliver a personalized campaign from a template and a list" },
	{ "daemon", daemon_cmd,
	  "run the campaigns of the store when they are due" },
	{ "campaign", campaign_cmd,
	  "add, list, show, pause, resume, cancel campaigns" },
	{ "account", account_cmd,
	  "sending accounts and their allowances (quotas)" },
	{ "pop3-proxy", pop3_proxy_cmd,
	  "the POP3 edge proxy: answer empty mailbox checks locally" },
	{ "registry", registry_cmd,
	  "users of the POP3 proxy and their backend POP3 accounts" },
	{ "resolve", resolve_cmd,
	  "show where mail for domains goes (routes, MX, addresses)" },
	{ "config", config_cmd,
	  "print the configuration reference or the effective values" },
	{ "version", main_version, "print the version" },
	{ "help", main_help, "this list" },
};

#define MAIN_NCOMMANDS (sizeof(main_commands) / sizeof(main_commands[0]))

static void
main_usage(FILE *fp)
{
	size_t i;

	fprintf(fp, "usage: mailroom COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < MAIN_NCOMMANDS; i++)
		fprintf(fp, "  %-10s %s\n", main_commands[i].name,
		    main_commands[i].summary);
	fprintf(fp, "\nmailroom COMMAND --help describes each command.\n");
}

static int
main_version(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)) {
		printf("usage: mailroom version\n\nPrints the version of "
		    "mailroom.\n");
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "mailroom version: takes no arguments\n");
		return EX_USAGE;
	}
	printf("mailroom %s\n", MR_VERSION);
	return 0;
}

static int
main_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	main_usage(stdout);
	return 0;
}

int
main(int argc, char **argv)
{
	size_t i;

	/* A peer closing a socket must end one session, not the process. */
	signal(SIGPIPE, SIG_IGN);
	/* Loops are woken from other threads (event_active(): the spool's
	 * sync thread, the relay's listener posting to delivery loops). */
	if (evthread_use_pthreads() != 0) {
		fprintf(stderr, "mailroom: libevent without thread support\n");
		return EX_SOFTWARE;
	}
	if (argc < 2) {
		main_usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return main_help(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0)
		return main_version(1, argv + 1);
	for (i = 0; i < MAIN_NCOMMANDS; i++) {
		if (strcmp(argv[1], main_commands[i].name) == 0)
			return main_commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "mailroom: unknown command \"%s\"\n\n", argv[1]);
	main_usage(stderr);
	return EX_USAGE;
}
