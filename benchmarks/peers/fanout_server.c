/*
 * The platform reference for sockit's chat fan-out (benchmarks/chat.py,
 * room10k): a minimal single-threaded epoll chat with one room.
 *
 *   fanout_server PORT
 *
 * Each member gets "* welcome\n" on connect. Every complete line a member
 * sends is written to every other member as "[userN] LINE\n"; the lines
 * of one read go out together, one write per member. A line starting
 * with "/nick NAME" gets "* you are now NAME\n" (to the sender only) and
 * any other "/..." line is ignored, so benchmarks/roomload.py joins it as
 * it joins sockit. No join or leave notices, no history, no flood
 * control, no names.
 *
 * A member whose socket is full keeps what it could not take in a buffer
 * of its own (grown as needed, written when the socket drains); past
 * 4 MiB it is closed. No logging, no safety margins beyond that: that is
 * the point of a reference. Prints "listening on tcp://127.0.0.1:PORT"
 * once ready (PORT 0 works).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_BUF 65536
#define MAXEV 256
#define MAX_PENDING (4 << 20)
#define MAX_FD 65536

struct member {
    int fd;          /* -1: free slot */
    int index;       /* place in `room` */
    size_t in_len;
    char *in;        /* IN_BUF, allocated on first read */
    char *out;       /* what the socket did not take */
    size_t out_len, out_cap;
};

static struct member *members[MAX_FD];
static int room[MAX_FD];
static int room_len;
static int ep;
static char *fan;    /* the formatted lines of one read */
static size_t fan_cap;

static void drop_member(int fd) {
    struct member *m = members[fd];
    if (!m) return;
    int last = room[--room_len];
    room[m->index] = last;
    members[last]->index = m->index;
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(m->in);
    free(m->out);
    free(m);
    members[fd] = NULL;
}

/* Queues bytes the socket did not take; 0 if the member must go. */
static int keep(struct member *m, const char *p, size_t n) {
    if (m->out_len + n > MAX_PENDING) return 0;
    if (m->out_len + n > m->out_cap) {
        size_t cap = m->out_cap ? m->out_cap : 4096;
        while (cap < m->out_len + n) cap *= 2;
        m->out = realloc(m->out, cap);
        m->out_cap = cap;
    }
    if (m->out_len == 0) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = m->fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, m->fd, &ev);
    }
    memcpy(m->out + m->out_len, p, n);
    m->out_len += n;
    return 1;
}

/* Writes to a member now, or queues; 0 if the member must go. */
static int send_to(struct member *m, const char *p, size_t n) {
    if (m->out_len) return keep(m, p, n);
    ssize_t w = write(m->fd, p, n);
    if (w < 0) {
        if (errno != EAGAIN) return 0;
        w = 0;
    }
    if ((size_t)w < n) return keep(m, p + w, n - (size_t)w);
    return 1;
}

static void flush_member(struct member *m) {
    ssize_t w = write(m->fd, m->out, m->out_len);
    if (w < 0) {
        if (errno != EAGAIN) drop_member(m->fd);
        return;
    }
    memmove(m->out, m->out + w, m->out_len - (size_t)w);
    m->out_len -= (size_t)w;
    if (m->out_len == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = m->fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, m->fd, &ev);
    }
}

static void fan_out(int from, const char *bytes, size_t n) {
    int gone[MAXEV];
    int ngone = 0;
    for (int i = 0; i < room_len; i++) {
        int fd = room[i];
        if (fd == from) continue;
        if (!send_to(members[fd], bytes, n) && ngone < MAXEV) gone[ngone++] = fd;
    }
    for (int i = 0; i < ngone; i++) drop_member(gone[i]);
}

/* Reads once; handles the complete lines. */
static void read_member(struct member *m) {
    if (!m->in) m->in = malloc(IN_BUF);
    ssize_t r = read(m->fd, m->in + m->in_len, IN_BUF - m->in_len);
    if (r <= 0) {
        if (r < 0 && errno == EAGAIN) return;
        drop_member(m->fd);
        return;
    }
    m->in_len += (size_t)r;
    char name[32];
    int name_len = snprintf(name, sizeof name, "[user%d] ", m->fd);
    size_t need = m->in_len + m->in_len / 2 * (size_t)name_len + 64;
    if (need > fan_cap) {
        fan_cap = need * 2;
        fan = realloc(fan, fan_cap);
    }
    size_t f = 0, start = 0;
    for (;;) {
        char *nl = memchr(m->in + start, '\n', m->in_len - start);
        if (!nl) break;
        size_t end = (size_t)(nl - m->in);
        const char *line = m->in + start;
        size_t len = end - start;
        if (len && line[len - 1] == '\r') len--;
        if (len > 6 && memcmp(line, "/nick ", 6) == 0) {
            char reply[128];
            size_t nlen = len - 6 < 64 ? len - 6 : 64;
            int rl = snprintf(reply, sizeof reply, "* you are now %.*s\n", (int)nlen, line + 6);
            send_to(m, reply, (size_t)rl);
        } else if (len && line[0] != '/') {
            memcpy(fan + f, name, (size_t)name_len);
            f += (size_t)name_len;
            memcpy(fan + f, line, len);
            f += len;
            fan[f++] = '\n';
        }
        start = end + 1;
    }
    memmove(m->in, m->in + start, m->in_len - start);
    m->in_len -= start;
    if (m->in_len == IN_BUF) m->in_len = 0; /* a line too long: dropped */
    if (f) fan_out(m->fd, fan, f);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
        perror("listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on tcp://127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct member *m = calloc(1, sizeof *m);
                    m->fd = c;
                    m->index = room_len;
                    room[room_len++] = c;
                    members[c] = m;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    send_to(m, "* welcome\n", 10);
                }
                continue;
            }
            struct member *m = members[fd];
            if (!m) continue;
            if (evs[i].events & EPOLLOUT) {
                flush_member(m);
                if (!members[fd]) continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_member(m);
        }
    }
}
