/*
 * pop3_load.c - a POP3 mailbox-check load generator for bench/pop3.sh.
 *
 * A check is what a mail client does when it polls: connect, greeting,
 * USER, PASS, STAT, QUIT, one command at a time.  Two modes:
 *
 *   closed loop:  pop3_load -c CONC [-t THREADS] -d SECONDS HOST PORT USERS
 *       CONC checks always in flight, users taken round-robin: the
 *       most checks a second the server sustains.  With -t, THREADS
 *       event loops share them (thread k takes users k, k+THREADS, ...),
 *       so the generator need not be the limit on one core;
 *   schedule:     pop3_load -i SECONDS -d SECONDS HOST PORT USERS
 *       every user checks every -i seconds (starts spread evenly).
 *
 * Users are u0 .. u(USERS-1), password "pw".  Prints one line:
 *   checks=N errors=E seconds=S rate=R p50_ms=A p99_ms=B max_ms=C
 * Build: cc -O2 -pthread -o pop3_load bench/pop3_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum step { GREETING, USER, PASS, STAT, QUIT };

struct worker;

struct check {
	struct worker	*w;
	int	 fd;
	int	 step;
	int	 user;
	double	 t0;
	size_t	 have;
	char	 buf[1024];
};

/* One event loop: its checks and what it measured. */
struct worker {
	pthread_t	 tid;
	int		 first, stride;	/* its users: first, first+stride, .. */
	int		 nslots;
	double		*lat;
	size_t		 nlat, caplat;
	unsigned long	 errors;
};

static struct sockaddr_in addr;
static double dur = 10, interval = 0, t_start;
static int users;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
start(int ep, struct check *c, int user)
{
	/* The server speaks first: the greeting (or an error, or the hang-up
	 * of a refused connect) is the first event.  No EPOLLOUT, so the
	 * connect costs no extra wake-up and epoll_ctl(2). */
	struct epoll_event ev = { .events = EPOLLIN };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->step = GREETING;
	c->user = user;
	c->have = 0;
	c->t0 = now();
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 &&
	    errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	ev.data.ptr = c;
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	return 0;
}

static void
finish(struct check *c, int ok)
{
	struct worker *w = c->w;

	if (ok) {
		if (w->nlat == w->caplat) {
			w->caplat = w->caplat ? w->caplat * 2 : 65536;
			w->lat = realloc(w->lat, w->caplat * sizeof(*w->lat));
		}
		w->lat[w->nlat++] = (now() - c->t0) * 1000.0;
	} else {
		w->errors++;
	}
	close(c->fd);
	c->fd = -1;
}

/* step - a reply line came: send the next command.  0 going, 1 done. */
static int
advance(struct check *c)
{
	char cmd[64];
	int n = 0;

	switch (c->step) {
	case GREETING:
		n = snprintf(cmd, sizeof(cmd), "USER u%d\r\n", c->user);
		break;
	case USER:
		n = snprintf(cmd, sizeof(cmd), "PASS pw\r\n");
		break;
	case PASS:
		n = snprintf(cmd, sizeof(cmd), "STAT\r\n");
		break;
	case STAT:
		n = snprintf(cmd, sizeof(cmd), "QUIT\r\n");
		break;
	case QUIT:
		return 1;
	}
	if (write(c->fd, cmd, (size_t)n) != n)
		return -1;
	c->step++;
	return 0;
}

static int
readable(struct check *c)
{
	ssize_t r;
	char *nl;
	int st;

	r = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have - 1);
	if (r <= 0)
		return r == 0 || errno != EAGAIN ? -1 : 0;
	c->have += (size_t)r;
	c->buf[c->have] = '\0';
	while ((nl = strchr(c->buf, '\n')) != NULL) {
		if (strncmp(c->buf, "+OK", 3) != 0)
			return -1;
		memmove(c->buf, nl + 1, c->have - (size_t)(nl + 1 - c->buf));
		c->have -= (size_t)(nl + 1 - c->buf);
		c->buf[c->have] = '\0';
		if ((st = advance(c)) != 0)
			return st;
	}
	return 0;
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	double t_end = t_start + dur, t, *next = NULL;
	int ep, i, n, rr = 0;
	struct epoll_event evs[256];
	struct check *slots;

	slots = calloc((size_t)w->nslots, sizeof(*slots));
	for (i = 0; i < w->nslots; i++) {
		slots[i].fd = -1;
		slots[i].w = w;
	}
	ep = epoll_create1(0);
	if (interval > 0) {
		next = calloc((size_t)users, sizeof(*next));
		for (i = 0; i < users; i++)
			next[i] = t_start + interval * i / users;
	}
	for (;;) {
		t = now();
		/* Start what is due. */
		for (i = 0; i < w->nslots; i++) {
			if (slots[i].fd >= 0 || t >= t_end)
				continue;
			if (interval > 0) {
				if (next[i] > t)
					continue;
				next[i] += interval;
				if (start(ep, &slots[i], i) != 0)
					w->errors++;
			} else if (start(ep, &slots[i], w->first +
			    (rr++ % ((users - w->first + w->stride - 1) /
			    w->stride)) * w->stride) != 0) {
				w->errors++;
			}
		}
		if (t >= t_end) {
			for (i = 0; i < w->nslots && slots[i].fd < 0; i++)
				;
			if (i == w->nslots || t > t_end + 10)
				break;
		}
		n = epoll_wait(ep, evs, 256, interval > 0 ? 5 : 100);
		for (i = 0; i < n; i++) {
			struct check *c = evs[i].data.ptr;
			int st = 0;

			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				st = -1;
			else if (evs[i].events & EPOLLIN)
				st = readable(c);
			/* close(2) takes the socket out of the epoll set. */
			if (st != 0)
				finish(c, st > 0);
		}
	}
	close(ep);
	free(slots);
	free(next);
	return NULL;
}

int
main(int argc, char **argv)
{
	int conc = 50, threads = 1, opt, i;
	struct worker *ws;
	double *lat, t;
	size_t nlat = 0, k;
	unsigned long errors = 0;

	while ((opt = getopt(argc, argv, "c:d:i:t:")) != -1) {
		switch (opt) {
		case 'c': conc = atoi(optarg); break;
		case 'd': dur = atof(optarg); break;
		case 'i': interval = atof(optarg); break;
		case 't': threads = atoi(optarg); break;
		default: return 64;
		}
	}
	if (argc - optind != 3 || threads < 1 || conc < threads ||
	    (interval > 0 && threads != 1)) {
		fprintf(stderr, "usage: pop3_load [-c conc [-t threads] | "
		    "-i interval] [-d seconds] host port users\n");
		return 64;
	}
	addr.sin_family = AF_INET;
	inet_pton(AF_INET, argv[optind], &addr.sin_addr);
	addr.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
	users = atoi(argv[optind + 2]);
	if (users < threads) {
		fprintf(stderr, "pop3_load: fewer users than threads\n");
		return 64;
	}
	ws = calloc((size_t)threads, sizeof(*ws));
	t_start = now();
	for (i = 0; i < threads; i++) {
		ws[i].first = i;
		ws[i].stride = threads;
		ws[i].nslots = interval > 0 ? users :
		    conc / threads + (i < conc % threads);
		if (threads == 1)
			run(&ws[i]);
		else
			pthread_create(&ws[i].tid, NULL, run, &ws[i]);
	}
	for (i = 0; i < threads; i++) {
		if (threads > 1)
			pthread_join(ws[i].tid, NULL);
		nlat += ws[i].nlat;
		errors += ws[i].errors;
	}
	t = now() - t_start;
	lat = malloc((nlat ? nlat : 1) * sizeof(*lat));
	for (i = 0, k = 0; i < threads; i++) {
		if (ws[i].nlat)
			memcpy(lat + k, ws[i].lat, ws[i].nlat * sizeof(*lat));
		k += ws[i].nlat;
	}
	qsort(lat, nlat, sizeof(*lat), cmp);
	printf("checks=%zu errors=%lu seconds=%.1f rate=%.0f p50_ms=%.2f "
	    "p99_ms=%.2f max_ms=%.2f\n", nlat, errors, t, (double)nlat / t,
	    nlat ? lat[nlat / 2] : 0.0, nlat ? lat[nlat * 99 / 100] : 0.0,
	    nlat ? lat[nlat - 1] : 0.0);
	return 0;
}
