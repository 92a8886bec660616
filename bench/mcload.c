/* mcload: a closed-loop memcached text-protocol load generator (bench/mcload.py drives it).

   bench/memgen.py's design in C: N connections, each sending one request (`get K` or
   `set K 0 0 SIZE` + value) and the next when its reply is complete, keys picked at random
   from PREFIX + 12 digits below KEYS. The peers section's memcached rows measured the
   Python generator as much as the servers: it spent ~14 us of CPU per request on the two
   cores the servers run on; this spends ~9, nearly all of it the kernel's loopback TCP,
   which any client pays. Debian packages no memcached load tool whose
   keys and values fit (memaslap's keys have control bytes, memslap's values random sizes).

   Protocol with the driver, on stdin and stdout:
     mcload prints `READY` once every connection is open, then reads `GO T W D` (T, the
     window's start on CLOCK_MONOTONIC, which Python's time.monotonic() reads too; W the
     warm-up and D the measured seconds). Requests start at T; replies completing in
     [T+W, T+W+D) are counted. At T+W+D no connection sends again; mcload waits for the
     replies owed (at most TIMEOUT seconds), writes the measured latencies (seconds, native
     doubles) to LATENCY_FILE and prints one JSON line: {"ops":..,"errors":..,
     "codes":{..},"connections":..}. Exit 0; 2 for bad arguments; 1 for a failure (a
     connection refused or lost, a reply that is not memcached's), with the reason on
     stderr.

   A reply that is not the op's success is an error, counted by its first word (`MISS` for
   a get's bare END: every key read was written first); after one, that connection pauses
   2 ms, so a server that refuses does not spin it. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ERROR_PAUSE_S 0.002
#define MAX_CODES 16
#define CODE_LEN 32

enum { OP_GET, OP_SET };

struct conn {
    int fd;
    uint64_t rng;
    const char *req;      /* the request being sent */
    size_t req_len, sent; /* bytes of it written so far */
    double t0;            /* when it was sent */
    int waiting;          /* a reply is owed */
    double resume_at;     /* > 0: paused after an error until then */
    char *buf;
    size_t len, cap;
};

struct code {
    char name[CODE_LEN];
    long count;
};

static struct code codes[MAX_CODES];
static int ncodes;
static long ops, errors;
static double *lat;
static size_t nlat, caplat;
static int op;
static char **requests;
static size_t *request_lens;
static long nkeys;
static int ep = -1; /* the epoll instance every connection is registered with */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mcload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage(const char *why) {
    fprintf(stderr,
            "mcload: %s\nusage: mcload --op get|set --targets HOST:PORT[,HOST:PORT...] "
            "--connections N --prefix P --keys K --value-size V --seed S "
            "--latency-file PATH [--timeout SECONDS]\n",
            why);
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static long parse_long(const char *text, const char *what, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || end == text || v < lo || v > hi) {
        char why[160];
        snprintf(why, sizeof why, "%s must be an integer from %ld to %ld, not '%s'", what, lo,
                 hi, text);
        usage(why);
    }
    return v;
}

static void count_code(const char *name, size_t n) {
    if (n >= CODE_LEN) n = CODE_LEN - 1;
    for (int i = 0; i < ncodes; i++)
        if (strlen(codes[i].name) == n && memcmp(codes[i].name, name, n) == 0) {
            codes[i].count++;
            return;
        }
    if (ncodes < MAX_CODES - 1) { /* the last slot, OTHER, takes codes past the table */
        memcpy(codes[ncodes].name, name, n);
        codes[ncodes].name[n] = 0;
        codes[ncodes++].count = 1;
        return;
    }
    strcpy(codes[MAX_CODES - 1].name, "OTHER");
    codes[MAX_CODES - 1].count++;
    ncodes = MAX_CODES;
}

/* The length of the complete reply at buf[0..len), 0 if more is needed, -1 if it is not
   memcached's (a VALUE line without a size). */
static long reply_end(const char *buf, size_t len) {
    size_t pos = 0;
    for (;;) {
        const char *nl = memmem(buf + pos, len - pos, "\r\n", 2);
        if (!nl) return 0;
        size_t line = (size_t)(nl - buf);
        if (len - pos < 6 || memcmp(buf + pos, "VALUE ", 6) != 0) return (long)(line + 2);
        /* VALUE <key> <flags> <bytes> [<cas>]: the fourth word is the data's size */
        const char *p = buf + pos;
        int word = 0;
        long size = -1;
        while (p < nl) {
            while (p < nl && *p == ' ') p++;
            if (p >= nl) break;
            const char *w = p;
            while (p < nl && *p != ' ') p++;
            if (++word == 4) {
                char tmp[24];
                size_t n = (size_t)(p - w);
                if (n == 0 || n >= sizeof tmp) return -1;
                memcpy(tmp, w, n);
                tmp[n] = 0;
                char *end;
                size = strtol(tmp, &end, 10);
                if (*end || size < 0) return -1;
            }
        }
        if (size < 0) return -1;
        pos = line + 2 + (size_t)size + 2;
        if (pos > len) return 0;
    }
}

static void record(struct conn *c, const char *reply, size_t n, double t1, double start,
                   double end) {
    const char *code = NULL;
    size_t code_len = 0;
    if (op == OP_SET) {
        if (!(n == 8 && memcmp(reply, "STORED\r\n", 8) == 0)) code = reply;
    } else if (!(n >= 6 && memcmp(reply, "VALUE ", 6) == 0)) {
        if (n == 5 && memcmp(reply, "END\r\n", 5) == 0) {
            code = "MISS";
            code_len = 4;
        } else {
            code = reply;
        }
    }
    if (code == reply) {
        while (code_len < n && reply[code_len] != ' ' && reply[code_len] != '\r') code_len++;
        if (code_len == 0) {
            code = "EMPTY";
            code_len = 5;
        }
    }
    if (t1 >= start && t1 < end) {
        if (code) {
            errors++;
            count_code(code, code_len);
        } else {
            ops++;
            if (nlat == caplat) {
                caplat = caplat ? caplat * 2 : 1 << 16;
                lat = realloc(lat, caplat * sizeof *lat);
                if (!lat) die("out of memory for latencies");
            }
            lat[nlat++] = t1 - c->t0;
        }
    }
    if (code) c->resume_at = t1 + ERROR_PAUSE_S;
}

static void send_more(struct conn *c) {
    while (c->sent < c->req_len) {
        ssize_t w = write(c->fd, c->req + c->sent, c->req_len - c->sent);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) return; /* EPOLLOUT finishes it */
            die("write: %s (the server closed the connection mid-run?)", strerror(errno));
        }
        c->sent += (size_t)w;
    }
}

static void watch(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* Send the next request; what the socket did not take is sent on EPOLLOUT. */
static void start_request(struct conn *c, double t) {
    long i = (long)(next_rand(&c->rng) % (uint64_t)nkeys);
    c->req = requests[i];
    c->req_len = request_lens[i];
    c->sent = 0;
    c->t0 = t;
    c->waiting = 1;
    send_more(c);
    if (c->sent < c->req_len) watch(c, EPOLLIN | EPOLLOUT);
}

static int connect_to(const char *target) {
    char host[256];
    const char *colon = strrchr(target, ':');
    if (!colon || colon == target || (size_t)(colon - target) >= sizeof host)
        usage("a target must be HOST:PORT");
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = 0;
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc) die("%s: %s", target, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
        die("connect to %s: %s", target, strerror(errno));
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* non-blocking: a request the socket cannot take at once must not stall the others */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        die("fcntl: %s", strerror(errno));
    return fd;
}

static void build_requests(const char *prefix, long value_size, long seed) {
    char pattern[64];
    int plen = snprintf(pattern, sizeof pattern, "raftcache-bench-value-%ld-", seed);
    char *value = malloc((size_t)value_size + 1);
    if (!value) die("out of memory");
    for (long i = 0; i < value_size; i++) value[i] = pattern[i % plen]; /* as value_bytes() */
    requests = calloc((size_t)nkeys, sizeof *requests);
    request_lens = calloc((size_t)nkeys, sizeof *request_lens);
    if (!requests || !request_lens) die("out of memory");
    size_t cap = strlen(prefix) + (size_t)value_size + 96;
    for (long i = 0; i < nkeys; i++) {
        char *r = malloc(cap);
        if (!r) die("out of memory");
        int n;
        if (op == OP_GET) {
            n = snprintf(r, cap, "get %s%012ld\r\n", prefix, i);
        } else {
            n = snprintf(r, cap, "set %s%012ld 0 0 %ld\r\n", prefix, i, value_size);
            memcpy(r + n, value, (size_t)value_size);
            n += (int)value_size;
            memcpy(r + n, "\r\n", 2);
            n += 2;
        }
        requests[i] = r;
        request_lens[i] = (size_t)n;
    }
    free(value);
}

int main(int argc, char **argv) {
    const char *targets = NULL, *prefix = NULL, *latency_file = NULL, *op_name = NULL;
    long connections = -1, value_size = 100, seed = 0, timeout = 10;
    nkeys = -1;
    signal(SIGPIPE, SIG_IGN); /* a write to a closed connection fails, saying so */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage("every option takes a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--op")) op_name = v;
        else if (!strcmp(a, "--targets")) targets = v;
        else if (!strcmp(a, "--connections")) connections = parse_long(v, a, 1, 100000);
        else if (!strcmp(a, "--prefix")) prefix = v;
        else if (!strcmp(a, "--keys")) nkeys = parse_long(v, a, 1, 100000000);
        else if (!strcmp(a, "--value-size")) value_size = parse_long(v, a, 0, 1 << 26);
        else if (!strcmp(a, "--seed")) seed = parse_long(v, a, 0, 1L << 40);
        else if (!strcmp(a, "--latency-file")) latency_file = v;
        else if (!strcmp(a, "--timeout")) timeout = parse_long(v, a, 1, 3600);
        else {
            char why[128];
            snprintf(why, sizeof why, "unknown option '%.60s'", a);
            usage(why);
        }
    }
    if (!op_name || !targets || connections < 0 || !prefix || nkeys < 0 || !latency_file)
        usage("--op, --targets, --connections, --prefix, --keys and --latency-file are needed");
    if (!strcmp(op_name, "get")) op = OP_GET;
    else if (!strcmp(op_name, "set")) op = OP_SET;
    else usage("--op must be get or set");
    if (strlen(prefix) > 200 || strpbrk(prefix, " \r\n\t")) usage("--prefix must be a short word");
    build_requests(prefix, value_size, seed);

    /* targets: comma-separated; connection c goes to target c mod n, as memgen's do */
    char *list = strdup(targets);
    char *addrs[64];
    int naddrs = 0;
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
        if (naddrs < 64) addrs[naddrs++] = t;
    if (!naddrs) usage("--targets names no HOST:PORT");

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
    struct conn *conns = calloc((size_t)connections, sizeof *conns);
    if (!conns) die("out of memory");
    for (long c = 0; c < connections; c++) {
        struct conn *k = &conns[c];
        k->fd = connect_to(addrs[c % naddrs]);
        k->rng = (uint64_t)seed * 100003u + (uint64_t)c;
        k->cap = 4096;
        k->buf = malloc(k->cap);
        if (!k->buf) die("out of memory");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    }
    printf("READY\n");
    fflush(stdout);

    double t_start, warmup, duration;
    if (scanf(" GO %lf %lf %lf", &t_start, &warmup, &duration) != 3)
        die("expected `GO START WARMUP DURATION` on stdin");
    double measure_start = t_start + warmup, end = measure_start + duration;
    double deadline = end + (double)timeout;
    for (double t = now(); t < t_start; t = now()) {
        double wait = t_start - t;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
    for (long c = 0; c < connections; c++) start_request(&conns[c], now());

    struct epoll_event events[256];
    long owed = connections, paused = 0;
    while (owed > 0 || paused > 0) {
        double t = now();
        if (t >= deadline) die("%ld replies still owed %ld s after the window closed", owed, timeout);
        int wait_ms = 100;
        if (paused) wait_ms = 1;
        int n = epoll_wait(ep, events, 256, wait_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (events[e].events & EPOLLOUT) {
                send_more(c);
                if (c->sent == c->req_len) watch(c, EPOLLIN);
            }
            if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            if (c->len == c->cap) {
                c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
                if (!c->buf) die("out of memory");
            }
            ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                die("read: %s", strerror(errno));
            }
            if (r == 0) die("the server closed a connection mid-run");
            c->len += (size_t)r;
            if (!c->waiting) die("the server sent %zd bytes nobody asked for", r);
            long got = reply_end(c->buf, c->len);
            if (got < 0)
                die("not a memcached reply: %.*s", (int)(c->len < 60 ? c->len : 60), c->buf);
            if (got == 0) continue;
            double t1 = now();
            record(c, c->buf, (size_t)got, t1, measure_start, end);
            if ((size_t)got < c->len) die("the server sent more than one reply to one request");
            /* An error may come before the request is all sent (memcached refuses a value
               over its item size after the command line and swallows the data): the rest
               still goes out on EPOLLOUT, and the connection stays paused until it has. A
               success before the whole request is a broken server. */
            if (c->sent < c->req_len && c->resume_at <= 0)
                die("the server answered before the whole request was sent");
            c->len = 0;
            c->waiting = 0;
            if (c->resume_at > 0 && t1 < end) {
                paused++;
                owed--;
            } else if (t1 < end) {
                start_request(c, t1);
            } else {
                c->resume_at = 0;
                owed--;
            }
        }
        if (paused) {
            t = now();
            for (long i = 0; i < connections; i++) {
                struct conn *c = &conns[i];
                if (c->resume_at <= 0 || c->resume_at > t) continue;
                if (c->sent < c->req_len) continue; /* the refused request is still going out */
                c->resume_at = 0;
                paused--;
                if (t < end) {
                    owed++;
                    start_request(c, t);
                }
            }
        }
    }

    FILE *f = fopen(latency_file, "wb");
    if (!f) die("%s: %s", latency_file, strerror(errno));
    if (nlat && fwrite(lat, sizeof *lat, nlat, f) != nlat) die("%s: short write", latency_file);
    if (fclose(f)) die("%s: %s", latency_file, strerror(errno));
    printf("{\"ops\":%ld,\"errors\":%ld,\"connections\":%ld,\"codes\":{", ops, errors,
           connections);
    for (int i = 0; i < ncodes; i++) {
        printf("%s\"", i ? "," : "");
        for (const char *p = codes[i].name; *p; p++) /* JSON-safe: printable ASCII only */
            putchar(*p == '"' || *p == '\\' || *p < 0x20 || *p > 0x7e ? '?' : *p);
        printf("\":%ld", codes[i].count);
    }
    printf("}}\n");
    return 0;
}
