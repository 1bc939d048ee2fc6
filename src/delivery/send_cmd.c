/*
 * send_cmd.c - "mailroom send": deliver one campaign in the foreground.
 *
 * It maps the list, compiles the template against the list's columns,
 * loads and checks every row (rejects go to the reject file and the
 * accounting file), then runs one delivery engine per worker thread,
 * domains sharded among them, shows progress, and prints a summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "commands.h"
#include "conf/conf.h"
#include "conf/conf_cli.h"
#include "core/mr_clock.h"
#include "core/mr_err.h"
#include "core/mr_log.h"
#include "core/xalloc.h"
#include "delivery/acct.h"
#include "delivery/campaign.h"
#include "delivery/csv.h"
#include "delivery/engine.h"
#include "delivery/list.h"
#include "delivery/template.h"
#include "net/conn.h"
#include "smtp/addr.h"

#define SEND_WORKERS_MAX	64
#define SEND_TTY_REFRESH_MS	200

struct send_opts {
	const char	*template_path;
	const char	*list_path;
	bool		 no_progress;
};

/* State of one run, for the reject callback and the summary. */
struct send_run {
	struct campaign	 camp;
	struct mr_config cfg;
	struct send_opts opts;
	struct list	*list;
	struct tmpl	*tmpl;
	char		*mail_from;
	char		*reject_path;
	FILE		*reject_fp;
	int		 reject_err;
	uint64_t	 nrejects;
	struct list_stats lst;
	struct engine	*engines[SEND_WORKERS_MAX];
	struct engine_stats est[SEND_WORKERS_MAX];
	pthread_t	 threads[SEND_WORKERS_MAX];
	unsigned	 nworkers;
	uint64_t	 t0;
	uint64_t	 total;
};

static volatile sig_atomic_t send_signalled;

static void
send_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailroom send --template FILE --list FILE [options]\n\n"
	    "Delivers one personalized message to every recipient of the "
	    "list: the\ntemplate is an RFC 5322 message with {{column}} "
	    "placeholders, the list a\nCSV file with a header row and an "
	    "\"email\" column.  Progress goes to\nstandard error, the summary "
	    "to standard output.\n\n"
	    "  -t, --template FILE         message template\n"
	    "  -l, --list FILE             recipient list (CSV)\n"
	    "  -c, --config FILE           configuration file (INI); flags "
	    "win over it\n"
	    "  -o, --set SECTION.KEY=VALUE override any configuration key\n"
	    "      --route DOMAIN=HOST:PORT  send DOMAIN's mail to HOST:PORT "
	    "(repeatable;\n"
	    "                              * is every domain, .example.com "
	    "its subdomains)\n"
	    "      --resolver HOST:PORT    DNS server to ask (repeatable)\n"
	    "      --accounting FILE       append one record per recipient "
	    "outcome\n"
	    "      --accounting-format csv|json\n"
	    "      --reject-file FILE      rejected rows (default: LIST."
	    "rejects.csv)\n"
	    "      --forensics-dir DIR     keep messages refused with 5xx "
	    "here\n"
	    "      --from ADDRESS          envelope sender (default: the "
	    "template's From)\n"
	    "      --no-progress           no progress display\n"
	    "  -h, --help                  this text\n\n"
	    "Exit status: 0 when every recipient reached a final state "
	    "(delivered, or\nbounced, or out of retries); 64 bad usage; 65 bad "
	    "list or template; 66 a\nfile cannot be read; 73 an output file "
	    "cannot be created; 75 interrupted;\n78 bad configuration.  "
	    "See docs/CONFIG.md for every key.\n");
}

static void
send_on_signal(int sig)
{
	(void)sig;
	send_signalled = 1;
}

/* send_reject - a refused row: to the reject file and the accounting. */
static void
send_reject(void *arg, unsigned line, const char *reason, const char *row,
    size_t row_len, const char *email, size_t email_len)
{
	struct send_run *run = arg;
	struct mr_buf b = MR_BUF_INIT;
	struct acct_record r;

	run->nrejects++;
	if (run->reject_fp == NULL && run->reject_err == 0) {
		run->reject_fp = fopen(run->reject_path, "we");
		if (run->reject_fp == NULL)
			run->reject_err = -errno;
		else
			fputs("line,reason,row\n", run->reject_fp);
	}
	if (run->reject_fp != NULL) {
		mr_buf_printf(&b, "%u,", line);
		csv_write_field(&b, reason, strlen(reason));
		mr_buf_putc(&b, ',');
		csv_write_field(&b, row, row_len);
		mr_buf_putc(&b, '\n');
		if (fwrite(b.data, 1, b.len, run->reject_fp) != b.len &&
		    run->reject_err == 0)
			run->reject_err = -errno;
	}
	mr_buf_release(&b);
	if (run->camp.acct != NULL) {
		memset(&r, 0, sizeof(r));
		r.type = ACCT_REJECTED;
		r.rcpt = email;
		r.rcpt_len = email_len;
		r.line = line;
		r.reply = reason;
		acct_write(run->camp.acct, &r);
	}
}

/* send_check_row - a row the template cannot render safely is refused. */
static const char *
send_check_row(void *arg, const struct csv_field *fields, size_t nfields,
    char *buf, size_t size)
{
	struct send_run *run = arg;
	size_t col;

	if (tmpl_check_fields(run->tmpl, fields, nfields, &col) == 0)
		return NULL;
	snprintf(buf, size, "value in column \"%s\" holds a MIME boundary "
	    "of the template", list_columns(run->list)[col]);
	return buf;
}

static int
send_read_file(const char *path, size_t max, char **data_r, size_t *len_r,
    struct mr_buf *err)
{
	struct stat st;
	ssize_t n;
	size_t off = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		mr_buf_printf(err, "cannot open template %s: %s", path,
		    mr_strerror(r));
		return r;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		mr_buf_printf(err, "cannot read template %s: %s", path,
		    S_ISDIR(st.st_mode) ? "is a directory" :
		    "not a regular file");
		close(fd);
		return -EISDIR;
	}
	if ((size_t)st.st_size > max) {
		mr_buf_printf(err, "template %s is larger than "
		    "send.max_message_size", path);
		close(fd);
		return MR_ETOOLONG;
	}
	*data_r = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, *data_r + off, (size_t)st.st_size - off);
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			mr_buf_printf(err, "cannot read template %s: %s", path,
			    mr_strerror(r));
			free(*data_r);
			close(fd);
			return r;
		}
		off += (size_t)n;
	}
	(*data_r)[off] = '\0';
	*len_r = off;
	close(fd);
	return 0;
}

static int
send_exit_for(int code)
{
	if (code == -ENOENT || code == -EACCES || code == -EISDIR ||
	    code == -EPERM || code == -ENOTDIR || code == -ELOOP)
		return EX_NOINPUT;
	if (code < 0 && code > -4096)
		return EX_IOERR;
	return EX_DATAERR;
}

/* send_prepare - everything before delivery starts.  0 or an exit code. */
static int
send_prepare(struct send_run *run)
{
	const struct mr_config *cfg = &run->cfg;
	struct mr_buf err = MR_BUF_INIT, warn = MR_BUF_INIT;
	char *text = NULL;
	size_t len = 0, at, i;
	bool *fp_cols = NULL;
	const char *from;
	int code, ex = 0;

	run->list = list_open(run->opts.list_path,
	    (size_t)cfg->send_max_row_size, &err, &code);
	if (run->list == NULL) {
		ex = send_exit_for(code);
		goto out;
	}
	code = send_read_file(run->opts.template_path,
	    (size_t)cfg->send_max_message_size, &text, &len, &err);
	if (code != 0) {
		ex = send_exit_for(code);
		goto out;
	}
	run->tmpl = tmpl_compile(text, len, list_columns(run->list),
	    list_ncolumns(run->list), &err, &warn);
	free(text);
	if (warn.len)
		fprintf(stderr, "%s", warn.data);
	if (run->tmpl == NULL) {
		ex = EX_DATAERR;
		goto out;
	}
	from = *cfg->send_mail_from ? cfg->send_mail_from :
	    tmpl_from_address(run->tmpl);
	if (from == NULL) {
		mr_buf_puts(&err, "no envelope sender: the template's From "
		    "header holds a placeholder or several addresses; give "
		    "--from");
		ex = EX_DATAERR;
		goto out;
	}
	if (smtp_addr_check(from, strlen(from), &at) != NULL) {
		mr_buf_printf(&err, "envelope sender \"%s\": %s", from,
		    smtp_addr_check(from, strlen(from), &at));
		ex = EX_DATAERR;
		goto out;
	}
	run->mail_from = xstrdup(from);

	if (*cfg->send_accounting_file) {
		run->camp.acct = acct_open(cfg->send_accounting_file,
		    cfg->send_accounting_format, &err);
		if (run->camp.acct == NULL) {
			ex = EX_CANTCREAT;
			goto out;
		}
	}
	if (*cfg->send_reject_file) {
		run->reject_path = xstrdup(cfg->send_reject_file);
	} else {
		mr_buf_reset(&warn);
		mr_buf_printf(&warn, "%s.rejects.csv", run->opts.list_path);
		run->reject_path = xstrdup(warn.data);
	}
	/* Batching needs fingerprints of the fields the template uses; a
	 * template that uses the address makes every message unique. */
	if (cfg->send_max_rcpt_per_message > 1 &&
	    !tmpl_uses_column(run->tmpl, list_email_column(run->list))) {
		fp_cols = xcalloc(list_ncolumns(run->list), sizeof(*fp_cols));
		for (i = 0; i < list_ncolumns(run->list); i++)
			fp_cols[i] = tmpl_uses_column(run->tmpl, i);
		run->camp.batching = true;
	}
	code = list_load(run->list, fp_cols, send_check_row, send_reject, run,
	    &run->lst);
	free(fp_cols);
	if (run->reject_fp != NULL && fclose(run->reject_fp) != 0 &&
	    run->reject_err == 0)
		run->reject_err = -errno;
	run->reject_fp = NULL;
	if (run->reject_err != 0) {
		mr_buf_printf(&err, "cannot write reject file %s: %s",
		    run->reject_path, mr_strerror(run->reject_err));
		ex = EX_CANTCREAT;
		goto out;
	}
	if (code != 0) {
		mr_buf_printf(&err, "cannot read list %s: %s",
		    run->opts.list_path, mr_strerror(code));
		ex = EX_IOERR;
		goto out;
	}
	if (list_count(run->list) == 0) {
		if (run->lst.rows == 0)
			mr_buf_printf(&err, "list %s has no recipients (only a "
			    "header row)", run->opts.list_path);
		else
			mr_buf_printf(&err, "list %s has no valid recipient: "
			    "%llu rows rejected, see %s", run->opts.list_path,
			    (unsigned long long)run->lst.rejected,
			    run->reject_path);
		ex = EX_DATAERR;
		goto out;
	}
out:
	if (ex != 0)
		fprintf(stderr, "mailroom send: %s\n", mr_buf_cstr(&err));
	mr_buf_release(&err);
	mr_buf_release(&warn);
	return ex;
}

static void *
send_worker(void *arg)
{
	engine_run(arg);
	return NULL;
}

static void
send_format_duration(double s, char *buf, size_t size)
{
	unsigned long t = (unsigned long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60,
		    t % 60);
	else
		snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

/* send_progress - one progress report; live (redrawn) on a terminal. */
static void
send_progress(struct send_run *run, bool live, bool final)
{
	struct campaign *c = &run->camp;
	uint64_t delivered = atomic_load(&c->delivered);
	uint64_t bounced = atomic_load(&c->bounced);
	uint64_t deferrals = atomic_load(&c->deferrals);
	uint64_t done = delivered + bounced;
	double el = (double)(mr_clock_ms() - run->t0) / 1000.0;
	double rate = el > 0 ? (double)done / el : 0;
	char eta[32] = "-";

	if (rate > 0 && done < run->total)
		send_format_duration((double)(run->total - done) / rate, eta,
		    sizeof(eta));
	fprintf(stderr, "%s%llu/%llu done (%.1f%%) %.0f msg/s delivered %llu "
	    "bounced %llu deferrals %llu eta %s%s",
	    live ? "\r\033[K" : "", (unsigned long long)done,
	    (unsigned long long)run->total,
	    run->total ? 100.0 * (double)done / (double)run->total : 100.0,
	    rate, (unsigned long long)delivered, (unsigned long long)bounced,
	    (unsigned long long)deferrals, eta, live && !final ? "" : "\n");
	fflush(stderr);
}

static int
send_deliver(struct send_run *run)
{
	struct campaign *c = &run->camp;
	const struct mr_config *cfg = &run->cfg;
	struct mr_buf err = MR_BUF_INIT;
	struct sigaction sa;
	struct rlimit rl;
	uint64_t last = 0, now, interval;
	long ncpu;
	unsigned i, w;
	uint32_t r;
	bool live;

	/* Sessions need descriptors: take the hard limit, keep some for
	 * files and DNS, and let the engines share the rest. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
			(void)getrlimit(RLIMIT_NOFILE, &rl);
		}
		c->max_sessions = rl.rlim_cur > 256 + 64 ?
		    (unsigned)(rl.rlim_cur > 1000000 ? 1000000 :
		    rl.rlim_cur - 256) : 64;
	} else {
		c->max_sessions = 512;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	w = cfg->general_workers > 0 ? (unsigned)cfg->general_workers :
	    (unsigned)(ncpu > 1 ? ncpu - 1 : 1);
	if (w > SEND_WORKERS_MAX)
		w = SEND_WORKERS_MAX;
	if (w > list_ndomains(run->list))
		w = (unsigned)list_ndomains(run->list);
	run->nworkers = w;
	c->nworkers = w;
	for (i = 0; i < w; i++) {
		run->engines[i] = engine_new(c, i, &err);
		if (run->engines[i] == NULL) {
			fprintf(stderr, "mailroom send: %s\n",
			    mr_buf_cstr(&err));
			mr_buf_release(&err);
			run->nworkers = i;
			return EX_CONFIG;
		}
	}
	run->total = list_count(run->list);
	for (r = 0; r < list_count(run->list); r++)
		engine_add(run->engines[list_domain(run->list, r) % w], r);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = send_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	live = !run->opts.no_progress && isatty(STDERR_FILENO);
	if (live)
		mr_log_set_tty_clear(true);
	interval = live ? SEND_TTY_REFRESH_MS :
	    (uint64_t)cfg->send_progress_interval;
	run->t0 = mr_clock_ms();
	for (i = 0; i < w; i++)
		pthread_create(&run->threads[i], NULL, send_worker,
		    run->engines[i]);
	for (;;) {
		uint64_t done = atomic_load(&c->delivered) +
		    atomic_load(&c->bounced);
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (send_signalled && !atomic_load(&c->stop)) {
			atomic_store(&c->stop, true);
			/* A second signal ends the process at once. */
			sa.sa_handler = SIG_DFL;
			sigaction(SIGINT, &sa, NULL);
			sigaction(SIGTERM, &sa, NULL);
			fprintf(stderr, "%smailroom send: stopping: finishing "
			    "the transactions in flight (signal again to quit "
			    "now)\n", live ? "\r\033[K" : "");
		}
		if (done >= run->total || atomic_load(&c->stop))
			break;
		now = mr_clock_ms();
		if (!run->opts.no_progress && now - last >= interval) {
			send_progress(run, live, false);
			last = now;
		}
		if (c->acct != NULL && now / 1000 != last / 1000)
			acct_flush(c->acct);
		nanosleep(&ts, NULL);
	}
	for (i = 0; i < w; i++)
		pthread_join(run->threads[i], NULL);
	if (!run->opts.no_progress)
		send_progress(run, live, true);
	if (live)
		mr_log_set_tty_clear(false);
	for (i = 0; i < w; i++)
		engine_get_stats(run->engines[i], &run->est[i]);
	return 0;
}

struct send_domain_row {
	uint32_t	id;
	uint64_t	n;
};

static int
send_domain_cmp(const void *a, const void *b)
{
	const struct send_domain_row *x = a, *y = b;

	return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

static void
send_summary(struct send_run *run)
{
	struct campaign *c = &run->camp;
	double el = (double)(mr_clock_ms() - run->t0) / 1000.0;
	uint64_t done = atomic_load(&c->delivered) + atomic_load(&c->bounced);
	uint64_t unfinished = 0, qbytes = 0, qpeak = 0, sessions = 0;
	size_t nd = list_ndomains(run->list), i, top;
	struct send_domain_row *rows;
	struct rusage ru;
	unsigned w;

	for (w = 0; w < run->nworkers; w++) {
		unfinished += run->est[w].unfinished;
		qbytes += run->est[w].queue_bytes;
		qpeak += run->est[w].queued_peak;
		sessions += run->est[w].sessions;
	}
	printf("campaign: %s\n", c->token);
	printf("list: %s (%llu rows)\n", run->opts.list_path,
	    (unsigned long long)run->lst.rows);
	printf("recipients: %u\n", list_count(run->list));
	printf("delivered: %llu\n",
	    (unsigned long long)atomic_load(&c->delivered));
	printf("bounced: %llu\n", (unsigned long long)atomic_load(&c->bounced));
	printf("rejected: %llu\n", (unsigned long long)run->lst.rejected);
	printf("duplicates: %llu\n", (unsigned long long)run->lst.duplicates);
	printf("deferrals: %llu\n",
	    (unsigned long long)atomic_load(&c->deferrals));
	if (unfinished)
		printf("unfinished: %llu\n", (unsigned long long)unfinished);
	printf("duration: %.3f s\n", el);
	printf("rate: %.1f msg/s\n", el > 0 ? (double)done / el : 0.0);
	printf("sessions: %llu\n", (unsigned long long)sessions);
	if (qpeak > 0)
		printf("memory: %zu bytes/recipient (table %zu, queue %.1f)\n",
		    list_bytes(run->list) / list_count(run->list) +
		    (size_t)(qbytes / qpeak), list_bytes(run->list) /
		    list_count(run->list), (double)qbytes / (double)qpeak);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		printf("peak-rss: %ld kB\n", ru.ru_maxrss);
	if (*run->cfg.send_accounting_file)
		printf("accounting: %s\n", run->cfg.send_accounting_file);
	if (run->nrejects)
		printf("rejects: %s (%llu rows)\n", run->reject_path,
		    (unsigned long long)run->nrejects);
	if (atomic_load(&c->forensics_kept) && c->forensics_dir)
		printf("forensics: %s\n", c->forensics_dir);
	/* The ten busiest domains. */
	rows = xcalloc(nd ? nd : 1, sizeof(*rows));
	for (i = 0; i < nd; i++) {
		rows[i].id = (uint32_t)i;
		rows[i].n = (uint64_t)c->dom[i].delivered + c->dom[i].bounced;
	}
	qsort(rows, nd, sizeof(*rows), send_domain_cmp);
	top = nd < 10 ? nd : 10;
	printf("domains: %zu\n", nd);
	for (i = 0; i < top; i++) {
		const struct campaign_domain_stats *s = &c->dom[rows[i].id];

		printf("domain: %s delivered=%u bounced=%u deferrals=%u\n",
		    list_domain_name(run->list, rows[i].id), s->delivered,
		    s->bounced, s->deferrals);
	}
	free(rows);
}

static void
send_release(struct send_run *run)
{
	unsigned i;

	for (i = 0; i < run->nworkers; i++)
		engine_free(&run->engines[i]);
	if (run->camp.tls_ctx)
		SSL_CTX_free(run->camp.tls_ctx);
	free(run->camp.dom);
	tmpl_free(&run->tmpl);
	list_free(&run->list);
	free(run->mail_from);
	free(run->reject_path);
	conf_release(&run->cfg);
}

int
send_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "template", required_argument, NULL, 't' },
		{ "list", required_argument, NULL, 'l' },
		CONF_CLI_LONGOPTS,
		{ "route", required_argument, NULL, 'R' },
		{ "resolver", required_argument, NULL, 'N' },
		{ "accounting", required_argument, NULL, 'A' },
		{ "accounting-format", required_argument, NULL, 'F' },
		{ "reject-file", required_argument, NULL, 'J' },
		{ "forensics-dir", required_argument, NULL, 'X' },
		{ "from", required_argument, NULL, 'f' },
		{ "no-progress", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct send_run *run;
	struct conf_cli cl = { 0 };
	struct mr_buf err = MR_BUF_INIT;
	unsigned char rnd[6];
	int c, ex, r;

	run = xcalloc(1, sizeof(*run));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "t:l:c:o:h", longopts,
	    NULL)) != -1) {
		if ((r = conf_cli_option(&cl, c, optarg, "send")) != 0) {
			if (r > 0)
				continue;
			ex = EX_USAGE;
			goto done;
		}
		switch (c) {
		case 't':
			run->opts.template_path = optarg;
			break;
		case 'l':
			run->opts.list_path = optarg;
			break;
		case 'R':
			conf_cli_set(&cl, "dns.route", optarg);
			break;
		case 'N':
			conf_cli_set(&cl, "dns.resolver", optarg);
			break;
		case 'A':
			conf_cli_set(&cl, "send.accounting_file", optarg);
			break;
		case 'F':
			conf_cli_set(&cl, "send.accounting_format", optarg);
			break;
		case 'J':
			conf_cli_set(&cl, "send.reject_file", optarg);
			break;
		case 'X':
			conf_cli_set(&cl, "send.forensics_dir", optarg);
			break;
		case 'f':
			conf_cli_set(&cl, "send.mail_from", optarg);
			break;
		case 'P':
			run->opts.no_progress = true;
			break;
		case 'h':
			send_usage(stdout);
			ex = 0;
			goto done;
		default:
			conf_cli_bad_option("send", argv);
			fprintf(stderr, "(see mailroom send --help)\n");
			ex = EX_USAGE;
			goto done;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mailroom send: unexpected argument \"%s\"\n",
		    argv[optind]);
		ex = EX_USAGE;
		goto done;
	}
	if (run->opts.template_path == NULL || run->opts.list_path == NULL) {
		fprintf(stderr, "mailroom send: --template and --list are "
		    "required (see mailroom send --help)\n");
		ex = EX_USAGE;
		goto done;
	}
	ex = conf_cli_load(&run->cfg, &cl, "send");
	if (ex != 0)
		goto done;

	run->camp.cfg = &run->cfg;
	if (strchr(run->cfg.general_hostname, '.') == NULL)
		fprintf(stderr, "mailroom send: warning: general.hostname "
		    "\"%s\" is not a fully qualified domain name; many "
		    "receivers refuse such an EHLO (set general.hostname)\n",
		    run->cfg.general_hostname);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	snprintf(run->camp.token, sizeof(run->camp.token),
	    "%llx.%02x%02x%02x%02x%02x%02x",
	    (unsigned long long)time(NULL), rnd[0], rnd[1], rnd[2], rnd[3],
	    rnd[4], rnd[5]);
	ex = send_prepare(run);
	if (ex != 0)
		goto out;
	run->camp.list = run->list;
	run->camp.tmpl = run->tmpl;
	run->camp.mail_from = run->mail_from;
	run->camp.start_mono_ms = mr_clock_ms();
	run->camp.forensics_dir = *run->cfg.send_forensics_dir ?
	    run->cfg.send_forensics_dir : NULL;
	run->camp.dom = xcalloc(list_ndomains(run->list) ?
	    list_ndomains(run->list) : 1, sizeof(*run->camp.dom));
	if (run->cfg.smtp_tls_policy != CONF_TLS_NONE) {
		run->camp.tls_ctx = net_tls_client_ctx(
		    run->cfg.smtp_tls_policy == CONF_TLS_VERIFY,
		    run->cfg.smtp_tls_ca_file, &err);
		if (run->camp.tls_ctx == NULL) {
			fprintf(stderr, "mailroom send: %s\n",
			    mr_buf_cstr(&err));
			ex = EX_CONFIG;
			goto out;
		}
	}
	ex = send_deliver(run);
	if (ex != 0)
		goto out;
	send_summary(run);
	if (atomic_load(&run->camp.stop)) {
		fprintf(stderr, "mailroom send: interrupted; recipients not "
		    "finished are listed as unfinished\n");
		ex = EX_TEMPFAIL;
	}
out:
	if (run->camp.acct != NULL) {
		r = acct_close(&run->camp.acct);
		if (r != 0) {
			fprintf(stderr, "mailroom send: writing the accounting "
			    "file %s failed: %s\n",
			    run->cfg.send_accounting_file, mr_strerror(r));
			if (ex == 0)
				ex = EX_IOERR;
		}
	}
	send_release(run);
done:
	mr_buf_release(&err);
	conf_cli_release(&cl);
	free(run);
	return ex;
}
