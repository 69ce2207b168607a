/*
 * The near-physical-limit reference for sockit's benchmarks: a minimal
 * single-threaded epoll server with sockit's ping and echo semantics.
 *
 *   epoll_server tcp PORT ping   each line "ping REST" gets "pong REST"
 *   epoll_server tcp PORT echo   every byte back
 *   epoll_server udp PORT ping   per datagram, same as TCP ping
 *
 * Replies to all complete lines of one read go out in one write. No limits,
 * no logging, no safety margins: that is the point of a reference.
 * Prints "listening on tcp://127.0.0.1:PORT" once ready (PORT 0 works).
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

#define BUF 65536
#define MAXEV 256

struct conn {
    int fd;
    size_t len;
    char in[BUF];
    char out[2 * BUF];
};

static int ping_mode = 1;

/* Appends the reply to one line (without '\n') to out; returns bytes. */
static size_t reply(const char *line, size_t n, char *out) {
    size_t o = 0;
    int cr = n > 0 && line[n - 1] == '\r';
    if (cr) n--;
    memcpy(out, "pong", 4);
    o = 4;
    if (n > 5 && memcmp(line, "ping ", 5) == 0) {
        memcpy(out + o, line + 4, n - 4);
        o += n - 4;
    }
    if (cr) out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

static int listen_on(int type, int port) {
    int fd = socket(AF_INET, type | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (type == SOCK_DGRAM) {
        int sz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM && listen(fd, 4096) < 0) { perror("listen"); exit(1); }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    printf("listening on %s://127.0.0.1:%d\n", type == SOCK_STREAM ? "tcp" : "udp", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

static void serve_udp(int fd) {
    char in[BUF], out[BUF + 16];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&from, &flen);
        if (n < 0) {
            if (errno == EAGAIN) {
                fd_set r; FD_ZERO(&r); FD_SET(fd, &r);
                select(fd + 1, &r, NULL, NULL, NULL);
            }
            continue;
        }
        size_t len = (size_t)n, o;
        int nl = len > 0 && in[len - 1] == '\n';
        if (nl) len--;
        o = reply(in, len, out);
        if (!nl) o--; /* no line end in, none out */
        sendto(fd, out, o, 0, (struct sockaddr *)&from, flen);
    }
}

/* Handles readable data; returns -1 when the connection is to be closed. */
static int on_readable(struct conn *c) {
    for (;;) {
        ssize_t n = read(c->fd, c->in + c->len, BUF - c->len);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        if (!ping_mode) {
            if (write(c->fd, c->in, n) != n) return -1;
            continue;
        }
        c->len += n;
        size_t start = 0, o = 0;
        char *nl;
        while ((nl = memchr(c->in + start, '\n', c->len - start)) != NULL) {
            size_t l = nl - (c->in + start);
            o += reply(c->in + start, l, c->out + o);
            start += l + 1;
        }
        if (o && write(c->fd, c->out, o) != (ssize_t)o) return -1;
        memmove(c->in, c->in + start, c->len - start);
        c->len -= start;
        if (c->len == BUF) c->len = 0; /* over-long line: drop it */
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s tcp|udp PORT [ping|echo]\n", argv[0]); return 2; }
    ping_mode = argc < 4 || strcmp(argv[3], "echo") != 0;
    int udp = strcmp(argv[1], "udp") == 0;
    int lfd = listen_on(udp ? SOCK_DGRAM : SOCK_STREAM, atoi(argv[2]));
    if (udp) serve_udp(lfd);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    nc->fd = fd;
                    nc->len = 0;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (on_readable(c) < 0) {
                close(c->fd);
                free(c);
            }
        }
    }
}
