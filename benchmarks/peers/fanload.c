/*
 * The one-sender and every-member loops of benchmarks/chatload.py
 * (fan100, fan500, ws100, busy100, fan100-rate, fan500-rate), in C. Closed
 * loop (RATE 0): the senders keep WINDOW lines in flight that some member
 * has not yet received, BATCH lines a write. Open loop (RATE > 0, one
 * sender): a line is due every 1/RATE s, whatever the members have heard,
 * and is sent once due; a probe carries the time it was due, so a server
 * that holds the sender back is charged for it. Either way every member's
 * socket is read and its lines counted. The sender is one connection of
 * its own (SENDER_FD), or with SENDER_FD -1 every member, in turn: a
 * member hears everyone's lines but its own. chatload.py connects and
 * joins the members and the sender (each server's own protocol), then
 * runs this program with the sockets inherited, so that the generator is
 * not the limit of the run: the Python loop spends three quarters of its
 * core in the interpreter, this one spends its time in recv().
 *
 *   fanload SENDER_FD WINDOW BATCH RATE PROBE_EVERY WARMUP_S DURATION_S
 *           QUICKACK PREFIX SUFFIX MEMBER_FD...
 *
 * A line is PREFIX TEXT SUFFIX, TEXT being 32 bytes that start with `^`;
 * every PROBE_EVERY-th is a probe `^T<ns>;` carrying its send time
 * (CLOCK_MONOTONIC), read back at receipt for the latency. Lines are
 * counted by their `^`, which no name, prefix or notice has. QUICKACK 1
 * sets TCP_QUICKACK after every read (chatload.py says why).
 *
 * Prints START when the measured part begins and END when it ends (on
 * their own lines, flushed: chat.py reads the servers' CPU time at
 * both), then one JSON line with the figures chatload.py reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TEXT_LEN 32
#define READ_BUF (1 << 18)
#define TAIL_MAX 64
#define MAXEV 1024
#define GONE INT64_MAX

struct member {
    int fd;
    int64_t count;      /* lines heard; GONE once the server closed it */
    int64_t said;       /* lines it sent (every member sending) */
    size_t tail_len;    /* a probe cut by the end of the last read */
    char tail[TAIL_MAX];
    char *pending;      /* what its socket did not take yet */
    size_t pending_len;
    int armed;          /* waiting for EPOLLOUT */
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "fanload: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static int64_t *lat;
static size_t lat_len, lat_cap;

static void record(int64_t ns) {
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat)
            die("realloc");
    }
    lat[lat_len++] = ns;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Counts the `^` in buf[from, end) and reads the probes in buf[0, end)
 * (buf[0, from) is the tail of the last read); keeps a probe the read cut
 * short for the next one. A plain loop that the compiler vectorizes (-O3)
 * counts; a probe is found by its `T`, which is rare in what members
 * hear (IRC's PRIVMSG has one a line). */
static int64_t scan(struct member *m, char *buf, size_t from, size_t end, int measuring, int64_t now) {
    int64_t got = 0;
    /* Byte counters, 255 bytes at a time, keep the vectors narrow. */
    for (size_t i = from; i < end;) {
        size_t stop = end - i > 255 ? i + 255 : end;
        unsigned char c = 0;
        for (; i < stop; i++)
            c += buf[i] == '^';
        got += c;
    }
    if (measuring) {
        for (const char *p = buf + 1; (p = memchr(p, 'T', buf + end - p)); p++) {
            if (p[-1] != '^')
                continue;
            const char *q = p + 1;
            int64_t ts = 0;
            while (q < buf + end && *q >= '0' && *q <= '9')
                ts = ts * 10 + (*q++ - '0');
            if (q < buf + end && *q == ';')
                record(now - ts);
        }
    }
    /* The tail a probe needs: from the last `^`, if no `;` ended it. */
    m->tail_len = 0;
    const char *last = got ? memrchr(buf + from, '^', end - from) : NULL;
    if (last && !memchr(last, ';', buf + end - last)) {
        size_t n = buf + end - last;
        if (n < TAIL_MAX && (n == 1 || last[1] == 'T')) {
            memcpy(m->tail, last, n);
            m->tail_len = n;
        }
    }
    return got;
}

/* Writes one line at p: PREFIX, the 32-byte text (a probe of time `ts`,
 * or with ts < 0 plain), SUFFIX. */
static void write_line(char *p, const char *prefix, size_t pre, const char *suffix, size_t suf, int64_t ts) {
    memcpy(p, prefix, pre);
    char *t = p + pre;
    int used = ts >= 0 ? snprintf(t, TEXT_LEN + 1, "^T%lld;", (long long)ts) : (t[0] = '^', 1);
    memset(t + used, '-', TEXT_LEN - used);
    memcpy(t + TEXT_LEN, suffix, suf);
}

/* Sends what `m` has pending; false once its socket is closed. */
static int flush(int ep, struct member *m, uint32_t index) {
    ssize_t w = send(m->fd, m->pending, m->pending_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN)
        return 0;
    if (w > 0) {
        memmove(m->pending, m->pending + w, m->pending_len - w);
        m->pending_len -= w;
    }
    int want = m->pending_len > 0;
    if (want != m->armed) {
        struct epoll_event ev = {.events = want ? EPOLLIN | EPOLLOUT : EPOLLIN, .data.u32 = index};
        epoll_ctl(ep, EPOLL_CTL_MOD, m->fd, &ev);
        m->armed = want;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 12) {
        fprintf(stderr, "usage: fanload SENDER_FD WINDOW BATCH RATE PROBE_EVERY WARMUP_S DURATION_S "
                        "QUICKACK PREFIX SUFFIX MEMBER_FD...\n");
        return 2;
    }
    int sender_fd = atoi(argv[1]);
    int64_t window = atoll(argv[2]), batch = atoll(argv[3]), every = atoll(argv[5]);
    double rate = atof(argv[4]), warmup = atof(argv[6]), duration = atof(argv[7]);
    int quickack = atoi(argv[8]);
    const char *prefix = argv[9], *suffix = argv[10];
    size_t pre = strlen(prefix), suf = strlen(suffix), line_len = pre + TEXT_LEN + suf;
    int n = argc - 11;
    int open_loop = rate > 0;
    if (open_loop && sender_fd < 0) {
        fprintf(stderr, "fanload: RATE needs a sender of its own\n");
        return 2;
    }
    /* members[n], when there is one, is the sender of its own: what it
     * hears is not counted. */
    int lone = sender_fd >= 0, senders = lone ? 1 : n;
    struct member *members = calloc(n + 1, sizeof *members);
    char *buf = malloc(READ_BUF + TAIL_MAX);
    if (!members || !buf)
        die("malloc");

    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < n + lone; i++) {
        struct member *m = &members[i];
        m->fd = i < n ? atoi(argv[11 + i]) : sender_fd;
        if (i == n || !lone) {
            m->pending = malloc(batch * line_len);
            if (!m->pending)
                die("malloc");
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, m->fd, &ev) < 0)
            die("epoll_ctl");
    }

    int64_t start = now_ns(), warm_end = start + (int64_t)(warmup * 1e9);
    int64_t end = warm_end + (int64_t)(duration * 1e9);
    int64_t sent_total = 0, sent = 0, received = 0, seq = 0, closed = 0, wall0 = 0;
    /* Open loop: when the next line is due, and every how long. */
    int64_t interval = open_loop ? (int64_t)(1e9 / rate) : 0, due = start;
    int64_t skipped = 0; /* due lines not sent: the sender's socket was full */
    int64_t reads = 0, bytes = 0; /* members' reads while measuring */
    double cpu0 = 0;
    int measuring = 0, turn = 0;
    struct epoll_event events[MAXEV];

    for (;;) {
        int64_t now = now_ns();
        if (now >= end)
            break;
        if (!measuring && now >= warm_end) {
            measuring = 1;
            cpu0 = cpu_s();
            wall0 = now;
            printf("START\n");
            fflush(stdout);
        }
        struct timespec wait = {0, 10000000};
        if (open_loop) {
            /* Every line due by now, in one write; one the server left no
             * room for is not sent (and counted), the schedule goes on. */
            struct member *m = &members[n];
            size_t cap = (size_t)batch * line_len, before = m->pending_len;
            for (; due <= now; due += interval, seq++) {
                if (m->pending_len + line_len > cap) {
                    if (measuring)
                        skipped++;
                    continue;
                }
                write_line(m->pending + m->pending_len, prefix, pre, suffix, suf, seq % every == 0 ? due : -1);
                m->pending_len += line_len;
            }
            int64_t k = (int64_t)((m->pending_len - before) / line_len);
            if (k) {
                if (!flush(ep, m, n))
                    die("the server closed the sender's connection");
                sent_total += k;
                if (measuring)
                    sent += k;
            }
            int64_t left = due - now_ns();
            wait.tv_sec = 0;
            wait.tv_nsec = left < 0 ? 0 : left < 10000000 ? left : 10000000;
        } else {
            /* Member i is owed every line sent but its own: the one furthest
             * behind sets the room left in the window. */
            int64_t floor = GONE;
            for (int i = 0; i < n; i++)
                if (members[i].count != GONE && members[i].count + members[i].said < floor)
                    floor = members[i].count + members[i].said;
            if (floor == GONE)
                floor = sent_total;
            int64_t room = window - (sent_total - floor);
            /* Each sender in turn (one that is closed, or whose last write is
             * not all out, is passed over), `batch` lines a write. */
            for (int tries = 0; room > 0 && tries < senders; tries++) {
                int j = lone ? n : turn;
                turn = (turn + 1) % n;
                struct member *m = &members[j];
                if (m->pending_len || m->count == GONE)
                    continue;
                tries = -1;
                int64_t k = room < batch ? room : batch;
                int64_t ts = now_ns();
                /* Made in its pending buffer (empty now), and sent from there. */
                char *p = m->pending;
                for (int64_t l = 0; l < k; l++, seq++, p += line_len)
                    write_line(p, prefix, pre, suffix, suf, seq % every == 0 ? ts : -1);
                m->pending_len = p - m->pending;
                if (!flush(ep, m, j)) {
                    if (lone)
                        die("the server closed the sender's connection");
                    m->pending_len = 0;
                    continue;
                }
                if (!lone)
                    m->said += k;
                sent_total += k;
                room -= k;
                if (measuring)
                    sent += k;
            }
        }
        int ready = epoll_pwait2(ep, events, MAXEV, &wait, NULL);
        if (ready < 0 && errno != EINTR)
            die("epoll_wait");
        now = now_ns();
        for (int e = 0; e < ready; e++) {
            uint32_t i = events[e].data.u32;
            struct member *m = &members[i];
            if (m->count == GONE)
                continue;
            if (events[e].events & EPOLLOUT && m->pending_len && !flush(ep, m, i) && lone)
                die("the server closed the sender's connection");
            if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            if (i == (uint32_t)n) {
                /* What the server says to the lone sender is not counted. */
                ssize_t r;
                while ((r = recv(m->fd, buf, READ_BUF, MSG_DONTWAIT)) > 0)
                    ;
                if (r == 0 || (r < 0 && errno != EAGAIN))
                    die("the server closed the sender's connection");
                continue;
            }
            size_t t = m->tail_len;
            memcpy(buf, m->tail, t);
            ssize_t r = recv(m->fd, buf + t, READ_BUF, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                /* The server closed it: it no longer holds the window. */
                epoll_ctl(ep, EPOLL_CTL_DEL, m->fd, NULL);
                m->count = GONE;
                closed++;
                continue;
            }
            if (quickack) {
                int one = 1;
                setsockopt(m->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
            }
            int64_t got = scan(m, buf, t, t + r, measuring, now);
            m->count += got;
            if (measuring) {
                received += got;
                reads++;
                bytes += r;
            }
        }
    }
    int64_t stop = now_ns();
    printf("END\n");
    fflush(stdout);
    double wall = wall0 ? (stop - wall0) / 1e9 : 0, cpu = measuring ? cpu_s() - cpu0 : 0;
    qsort(lat, lat_len, sizeof *lat, cmp64);
    printf("{\"wall_s\": %.6f, \"deliveries\": %lld, \"dps\": %.1f, \"sent\": %lld, \"skipped\": %lld, "
           "\"probes\": %zu, ",
           wall, (long long)received, wall ? received / wall : 0.0, (long long)sent, (long long)skipped, lat_len);
    if (lat_len) {
        printf("\"p50\": %.6f, \"p99\": %.6f, \"max\": %.6f, ", lat[(size_t)(0.50 * lat_len)] / 1e6,
               lat[(size_t)(0.99 * lat_len)] / 1e6, lat[lat_len - 1] / 1e6);
    } else {
        printf("\"p50\": null, \"p99\": null, \"max\": null, ");
    }
    printf("\"gen_cpu\": %.4f, \"closed\": %lld, \"read_bytes\": %.1f}\n", wall ? cpu / wall : 0.0,
           (long long)closed, reads ? (double)bytes / reads : 0.0);
    return 0;
}
