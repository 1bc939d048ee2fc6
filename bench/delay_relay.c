/*
 * delay_relay.c - a TCP relay that adds a fixed one-way delay in both
 * directions, to put a "WAN" between two loopback endpoints for
 * bench/pop3.py (this kernel has no netem qdisc).
 *
 *   delay_relay [-d MS] [-s TRIPS] LISTEN_ADDR LISTEN_PORT TARGET_ADDR
 *               TARGET_PORT
 *
 * Every chunk read from one side is written to the other side MS
 * milliseconds later (default 20, so a round trip gains 2 x MS), in the
 * order it was read; an end of stream (read() == 0) is passed on as a
 * shutdown(SHUT_WR) after the same delay, behind the data before it.  The
 * connection to the target is opened TRIPS one-way delays after the
 * client's (default 3: the SYN, SYN-ACK and ACK that a real path of that
 * delay costs before the server accepts), so a server's greeting reaches
 * the client 2 round trips after connect(), as it would.  A reset or
 * error on either side closes both.  Timing uses a timerfd with absolute
 * CLOCK_MONOTONIC deadlines (no millisecond rounding).  LISTEN_PORT 0
 * picks a free port; the relay prints "listen: ADDR:PORT" once bound,
 * then runs until SIGTERM or SIGINT.  IPv4 only.
 *
 * Build: cc -O2 -o delay_relay bench/delay_relay.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_MAX	16384
#define QUEUE_CAP	(1 << 20)	/* stop reading a side past this */

struct conn;

/* One direction of a connection: bytes read from src go to dst. */
struct dir {
	struct conn	*conn;
	int		 src, dst;	/* indexes into conn->fd */
	struct chunk	*head, *tail;	/* every chunk not yet written */
	size_t		 queued;	/* bytes in them */
	int		 read_eof;	/* src said end of stream */
	int		 shut;		/* dst got its shutdown(SHUT_WR) */
};

/* A piece of one direction's stream, or its end (len 0, eof 1). */
struct chunk {
	struct chunk	*next;		/* in its direction */
	struct chunk	*tnext;		/* in the timeline */
	struct dir	*dir;
	uint64_t	 due;		/* ns, CLOCK_MONOTONIC */
	int		 released;	/* due time passed */
	int		 eof;
	int		 connect;	/* a timeline entry: open the target */
	size_t		 len, off;
	char		 data[];
};

struct conn {
	int		 fd[2];		/* 0 the client, 1 the target */
	int		 tag[2];	/* epoll cookies: side index */
	uint32_t	 events[2];	/* epoll interest now */
	int		 connected;	/* target connection established */
	int		 gone[2];	/* side taken out of epoll (hung up) */
	int		 closed;
	int		 dying;		/* on the list of conns to free */
	struct conn	*next_dead;
	int		 in_timeline;	/* timeline entries still pointing here */
	struct dir	 d[2];		/* 0 client->target, 1 target->client */
};

/*
 * The timelines: chunks not yet released, in the order they were read
 * (0), and target connections not yet opened, in the order accepted (1).
 * Each holds entries of one fixed delay, so each is sorted by due time.
 */
static struct timeline {
	struct chunk	*head, *tail;
} tl[2];
static uint64_t delay_ns = 20000000ull;
static int setup_trips = 3;
static int ep, tfd, lfd;
static struct sockaddr_in target;
static uint64_t armed;			/* timer deadline set, 0 none */
static struct conn *dead;		/* closed, freed after the batch */
static volatile sig_atomic_t stop;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
arm(void)
{
	struct itimerspec its;
	uint64_t at;

	at = 0;
	if (tl[0].head != NULL)
		at = tl[0].head->due;
	if (tl[1].head != NULL && (at == 0 || tl[1].head->due < at))
		at = tl[1].head->due;
	if (at == armed)
		return;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = (time_t)(at / 1000000000ull);
	its.it_value.tv_nsec = (long)(at % 1000000000ull);
	timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
	armed = at;
}

static void
timeline_add(struct chunk *k)
{
	struct timeline *l = &tl[k->connect];

	k->tnext = NULL;
	if (l->tail != NULL)
		l->tail->tnext = k;
	else
		l->head = k;
	l->tail = k;
	k->dir->conn->in_timeline++;
	arm();
}

/* Epoll interest of side i: readable while its direction has room and
 * no end seen; writable while the other direction has released data
 * it could not write (or, for the target, until connected). */
static void
interest(struct conn *c, int i)
{
	struct epoll_event ev;
	struct dir *out = &c->d[i], *in = &c->d[1 - i];
	uint32_t want = 0;

	if (c->closed || c->fd[i] < 0 || c->gone[i])
		return;
	if (i == 1 && !c->connected) {
		want = EPOLLOUT;
	} else {
		if (!out->read_eof && out->queued < QUEUE_CAP)
			want |= EPOLLIN;
		if (in->head != NULL && in->head->released)
			want |= EPOLLOUT;
	}
	if (want == c->events[i])
		return;
	ev.events = want;
	ev.data.ptr = &c->tag[i];
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd[i], &ev);
	c->events[i] = want;
}

static void
conn_close(struct conn *c)
{
	int i;
	struct chunk *k, *n;

	if (!c->closed) {
		c->closed = 1;
		for (i = 0; i < 2; i++) {
			if (c->fd[i] >= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd[i], NULL);
				close(c->fd[i]);
				c->fd[i] = -1;
			}
			/* Released chunks are out of the timeline: free them;
			 * the others are freed as the timeline reaches them. */
			for (k = c->d[i].head; k != NULL && k->released; k = n) {
				n = k->next;
				free(k);
			}
			c->d[i].head = k;
		}
	}
	/* Freed after the current batch of events, which may name it. */
	if (c->in_timeline == 0 && !c->dying) {
		c->dying = 1;
		c->next_dead = dead;
		dead = c;
	}
}

static void
bury(void)
{
	struct conn *c;

	while ((c = dead) != NULL) {
		dead = c->next_dead;
		free(c);
	}
}

/* Write what direction d has released; 0 going, -1 the connection died. */
static int
flush(struct dir *d)
{
	struct conn *c = d->conn;
	struct chunk *k;
	ssize_t w;

	if (c->closed || !c->connected)
		return 0;
	while ((k = d->head) != NULL && k->released) {
		if (k->eof) {
			shutdown(c->fd[d->dst], SHUT_WR);
			d->shut = 1;
		} else {
			w = send(c->fd[d->dst], k->data + k->off, k->len - k->off,
			    MSG_NOSIGNAL);
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (w < 0)
				return -1;
			k->off += (size_t)w;
			d->queued -= (size_t)w;
			if (k->off < k->len)
				break;
		}
		d->head = k->next;
		if (d->head == NULL)
			d->tail = NULL;
		free(k);
	}
	if (c->d[0].shut && c->d[1].shut)
		return -1;	/* both ways ended: done */
	interest(c, d->dst);
	interest(c, d->src);
	return 0;
}

static void
queue_chunk(struct dir *d, const char *data, size_t len, int eof)
{
	struct chunk *k = malloc(sizeof(*k) + len);

	if (k == NULL)
		abort();
	memset(k, 0, sizeof(*k));
	k->dir = d;
	k->due = now_ns() + delay_ns;
	k->eof = eof;
	k->len = len;
	memcpy(k->data, data, len);
	if (d->tail != NULL)
		d->tail->next = k;
	else
		d->head = k;
	d->tail = k;
	d->queued += len;
	timeline_add(k);
}

static int
readable(struct conn *c, int i)
{
	static char buf[CHUNK_MAX];
	struct dir *d = &c->d[i];
	ssize_t r;

	r = recv(c->fd[i], buf, sizeof(buf), 0);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (r == 0) {
		d->read_eof = 1;
		queue_chunk(d, "", 0, 1);
	} else {
		queue_chunk(d, buf, (size_t)r, 0);
	}
	interest(c, i);
	return 0;
}

static void
open_target(struct conn *c)
{
	struct epoll_event ev;
	int one = 1;

	c->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd[1] < 0) {
		conn_close(c);
		return;
	}
	setsockopt(c->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd[1], (struct sockaddr *)&target, sizeof(target)) != 0
	    && errno != EINPROGRESS) {
		conn_close(c);
		return;
	}
	ev.events = EPOLLOUT;
	ev.data.ptr = &c->tag[1];
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[1], &ev);
	c->events[1] = EPOLLOUT;
}

static void
accept_one(void)
{
	struct epoll_event ev;
	struct conn *c;
	struct chunk *k;
	int fd, one = 1, i;

again:
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->fd[0] = fd;
	c->fd[1] = -1;
	for (i = 0; i < 2; i++) {
		c->tag[i] = i;
		c->d[i].conn = c;
		c->d[i].src = i;
		c->d[i].dst = 1 - i;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = &c->tag[0];
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	c->events[0] = EPOLLIN;
	/* The target is opened once the handshake would have got there. */
	k = calloc(1, sizeof(*k));
	if (k == NULL)
		abort();
	k->dir = &c->d[0];
	k->connect = 1;
	k->due = now_ns() + (uint64_t)setup_trips * delay_ns;
	if (setup_trips == 0) {
		free(k);
		open_target(c);
	} else {
		timeline_add(k);
	}
	goto again;
}

/* Release every chunk whose time has come, in order. */
static void
expire(void)
{
	uint64_t t = now_ns(), junk;
	struct timeline *l;
	struct chunk *k;
	struct conn *c;
	struct dir *d;

	if (read(tfd, &junk, sizeof(junk)) < 0)
		(void)junk;
	armed = 0;
	for (;;) {
		/* The earlier of the two heads, if its time has come. */
		l = &tl[0];
		if (tl[1].head != NULL && (l->head == NULL ||
		    tl[1].head->due < l->head->due))
			l = &tl[1];
		if ((k = l->head) == NULL || k->due > t)
			break;
		l->head = k->tnext;
		if (l->head == NULL)
			l->tail = NULL;
		d = k->dir;
		c = d->conn;
		c->in_timeline--;
		if (k->connect) {
			free(k);
			if (c->closed)
				conn_close(c);
			else
				open_target(c);
			continue;
		}
		if (c->closed) {
			free(k);	/* conn_close() left unreleased ones */
			conn_close(c);
			continue;
		}
		k->released = 1;
		if (flush(d) != 0)
			conn_close(c);
	}
	arm();
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	struct epoll_event ev, evs[256];
	struct sockaddr_in la;
	socklen_t sl = sizeof(la);
	int opt, one = 1, n, i;
	static int ltag = -1, ttag = -2;
	char ab[INET_ADDRSTRLEN];

	while ((opt = getopt(argc, argv, "d:s:")) != -1) {
		switch (opt) {
		case 'd':
			delay_ns = (uint64_t)(atof(optarg) * 1e6);
			break;
		case 's':
			setup_trips = atoi(optarg);
			break;
		default:
			return 64;
		}
	}
	if (argc - optind != 4) {
		fprintf(stderr, "usage: delay_relay [-d ms] [-s trips] "
		    "listen_addr listen_port target_addr target_port\n");
		return 64;
	}
	memset(&la, 0, sizeof(la));
	la.sin_family = AF_INET;
	la.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
	target.sin_family = AF_INET;
	target.sin_port = htons((unsigned short)atoi(argv[optind + 3]));
	if (inet_pton(AF_INET, argv[optind], &la.sin_addr) != 1 ||
	    inet_pton(AF_INET, argv[optind + 2], &target.sin_addr) != 1) {
		fprintf(stderr, "delay_relay: addresses are IPv4 literals\n");
		return 64;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&la, sizeof(la)) != 0 ||
	    listen(lfd, 4096) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&la, &sl) != 0) {
		perror("delay_relay: listen");
		return 69;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(0);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	ev.events = EPOLLIN;
	ev.data.ptr = &ltag;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = &ttag;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	inet_ntop(AF_INET, &la.sin_addr, ab, sizeof(ab));
	printf("listen: %s:%u\n", ab, ntohs(la.sin_port));
	fflush(stdout);
	while (!stop) {
		n = epoll_wait(ep, evs, 256, -1);
		for (i = 0; i < n; i++) {
			int *tag = evs[i].data.ptr, side;
			struct conn *c;

			if (tag == &ltag) {
				accept_one();
				continue;
			}
			if (tag == &ttag) {
				expire();
				continue;
			}
			side = *tag;
			c = (struct conn *)((char *)(tag - side) -
			    offsetof(struct conn, tag));
			if (c->closed)
				continue;
			if (side == 1 && !c->connected) {
				int err = 0;
				socklen_t el = sizeof(err);

				getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err,
				    &el);
				if (err != 0 || (evs[i].events & EPOLLERR)) {
					conn_close(c);
					continue;
				}
				c->connected = 1;
				if (flush(&c->d[0]) != 0) {
					conn_close(c);
					continue;
				}
				interest(c, 1);
				continue;
			}
			if ((evs[i].events & EPOLLOUT) &&
			    flush(&c->d[1 - side]) != 0) {
				conn_close(c);
				continue;
			}
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    !c->closed && !c->d[side].read_eof &&
			    readable(c, side) != 0) {
				conn_close(c);
				continue;
			}
			if (c->closed)
				continue;
			if (evs[i].events & EPOLLERR) {
				conn_close(c);
			} else if ((evs[i].events & EPOLLHUP) &&
			    c->d[side].read_eof) {
				/* Read and write sides both shut: nothing more
				 * to do on it, and it would stay "ready". */
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd[side], NULL);
				c->gone[side] = 1;
			}
		}
		bury();
	}
	return 0;
}
