/*
 * commands.h - the subcommands of mailroom.  Each takes the arguments
 * after its name (argv[0] is the subcommand's name) and returns the
 * process exit status (sysexits.h codes for errors).
 */
#ifndef MR_COMMANDS_H
#define MR_COMMANDS_H

int send_cmd(int argc, char **argv);		/* delivery/send_cmd.c */
int resolve_cmd(int argc, char **argv);		/* dns/resolve_cmd.c */
int config_cmd(int argc, char **argv);		/* conf/config_cmd.c */
int daemon_cmd(int argc, char **argv);		/* delivery/daemon_cmd.c */
int campaign_cmd(int argc, char **argv);	/* delivery/campaign_cmd.c */
int account_cmd(int argc, char **argv);		/* delivery/account_cmd.c */
int registry_cmd(int argc, char **argv);	/* registry/registry_cmd.c */
int pop3_proxy_cmd(int argc, char **argv);	/* pop3edge/pop3_proxy_cmd.c */

#endif
