/*
 * connload: the connection load generator of connauth's server benchmark
 * (bench/compare.ts builds and runs it; see bench/README.md).
 *
 * One thread, one epoll set, non-blocking sockets with TCP_NODELAY. It opens
 * N connections to HOST:PORT, at most C at a time. Each connection:
 *
 *   auth: read the 32-byte challenge, write HMAC(key, challenge) (the Python
 *         Cookbook handshake; SHA-256 unless -a says otherwise), then write
 *         "Hello World", read the 11-byte echo, close.
 *   raw:  write "Hello World", read the 11-byte echo, close.
 *
 * The digest and "Hello World" are two writes, as the Cookbook client makes
 * them. A connection that is not done within the deadline (-d) is closed and
 * counted as an error and a timeout. At the end it prints one JSON line:
 *
 *   {"mode":"auth","n":5000,"c":64,"ok":5000,"errors":0,"timeouts":0,
 *    "unfinished":0,"elapsed_s":0.41,"rate":12195.1,"p50_ms":5.1,
 *    "p99_ms":9.8,"max_ms":12.0,"cpu_s":0.21, ...}
 *
 * rate is ok connections per second of wall time, from the first connect to
 * the end of the last connection; p50/p99/max are over the ok connections,
 * from socket() to the last echo byte. cpu_s is this process's own CPU time
 * (user + system), so a reader can check the client was not the bottleneck.
 *
 * Build: gcc -O2 -o connload bench/connload.c -lcrypto   (OpenSSL 3)
 *
 * Usage: connload [options] PORT N C auth|raw
 *   -H HOST     server address, IPv4 (default 127.0.0.1)
 *   -b ADDR     bind each socket to this source address (default: any)
 *   -k SECRET      the shared secret (default: the CONNAUTH_SECRET environment
 *               variable; prefer it, a flag shows in the process list)
 *   -a DIGEST   HMAC digest: sha256 (default), sha1, sha384, sha512, md5
 *   -d SECONDS  per-connection deadline (default 10)
 *   -T SECONDS  start no new connection after this long (default: no limit);
 *               connections never started count as unfinished
 *   -i MS       wait MS milliseconds after a connection ends before its
 *               slot starts the next one (a prober: C=1, -i 100)
 *   -w MS       also count the ok connections done within MS ("within")
 *   -L          add "lat_ms": every connection's latency in start order,
 *               -1 for a failed one, and "fail": the failures' reasons
 * SIGINT or SIGTERM stops the run at once (in-flight connections count as
 * unfinished) and still prints the JSON line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHALLENGE_LEN 32
#define MAX_DIGEST 64
static const char HELLO[] = "Hello World";
#define HELLO_LEN 11

enum state { IDLE, CONNECTING, CHALLENGE, SENDING, ECHO };

struct slot {
  int fd;
  enum state state;
  long index;        /* which connection (0..N-1) */
  double started;    /* monotonic seconds */
  double deadline;
  double next_start; /* IDLE: when to start the next connection */
  unsigned char in[CHALLENGE_LEN];
  size_t have;
  unsigned char out[MAX_DIGEST + HELLO_LEN];
  size_t out_len, first_len, sent;
};

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char HELP[] =
    "Usage: connload [options] PORT N C auth|raw\n"
    "N connections to HOST:PORT, C at a time (auth: Cookbook handshake, then\n"
    "an 11-byte echo; raw: the echo only). Prints one JSON line.\n"
    "  -H HOST     server IPv4 address (default 127.0.0.1)\n"
    "  -b ADDR     bind each socket to this source address\n"
    "  -k SECRET      the shared secret (default: $CONNAUTH_SECRET)\n"
    "  -a DIGEST   HMAC digest (default sha256)\n"
    "  -d SECONDS  per-connection deadline (default 10)\n"
    "  -T SECONDS  start no new connection after this long\n"
    "  -i MS       pause before a slot's next connection (default 0)\n"
    "  -w MS       count the ok connections done within MS\n"
    "  -L          list every connection's latency and failure reason\n";

static void usage_exit(const char *why) {
  if (why) fprintf(stderr, "connload: %s\n", why);
  fprintf(stderr,
          "Usage: connload [-H host] [-b source] [-k key] [-a digest] "
          "[-d deadline_s] [-T limit_s] [-i interval_ms] [-w within_ms] [-L] "
          "PORT N C auth|raw\n");
  exit(2);
}

static long parse_long(const char *text, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || *end || end == text || value < min || value > max) {
    char message[160];
    snprintf(message, sizeof message, "Cannot use %s \"%s\": expected %ld to %ld",
             what, text, min, max);
    usage_exit(message);
  }
  return value;
}

static double parse_seconds(const char *text, const char *what) {
  char *end;
  double value = strtod(text, &end);
  if (*end || end == text || !(value > 0) || value > 1e6) {
    char message[160];
    snprintf(message, sizeof message,
             "Cannot use %s \"%s\": expected a positive number", what, text);
    usage_exit(message);
  }
  return value;
}

/* Run-wide state. */
static int auth_mode;
static long total, concurrency, started_count, ok_count, error_count,
    timeout_count;
static double deadline_s = 10, limit_s = 0, interval_s = 0, within_s = 0;
static long within_count;
static double *latency;   /* per connection, -1 failed, NAN not done */
static const char **fail_reason; /* per connection, with -L */
static int want_list;
static char first_error[128];
static struct sockaddr_in server, source;
static int bind_source;
static int epfd;
static EVP_MAC_CTX *mac;
static size_t digest_len;
static double run_start;

static void note_error(struct slot *s, const char *what, int err) {
  if (!first_error[0]) {
    if (err)
      snprintf(first_error, sizeof first_error, "%s: %s", what, strerror(err));
    else
      snprintf(first_error, sizeof first_error, "%s", what);
  }
  if (fail_reason) fail_reason[s->index] = what;
}

static void finish(struct slot *s, int ok, double t) {
  if (s->fd >= 0) close(s->fd); /* close() also leaves the epoll set */
  s->fd = -1;
  if (ok) {
    double took = t - s->started;
    latency[s->index] = took;
    ok_count++;
    if (within_s > 0 && took <= within_s) within_count++;
  } else {
    latency[s->index] = -1;
    error_count++;
  }
  s->state = IDLE;
  s->next_start = t + interval_s;
}

static void fail(struct slot *s, const char *what, int err, double t) {
  note_error(s, what, err);
  finish(s, 0, t);
}

static void advance(struct slot *s, double t);

static void start(struct slot *s, double t) {
  s->index = started_count++;
  s->started = t;
  s->deadline = t + deadline_s;
  s->have = s->sent = 0;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    fail(s, "socket", errno, t);
    return;
  }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind_source) {
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(s->fd, (struct sockaddr *)&source, sizeof source) < 0) {
      fail(s, "bind", errno, t);
      return;
    }
  }
  struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                              .data.ptr = s};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &event) < 0) {
    fail(s, "epoll_ctl", errno, t);
    return;
  }
  if (connect(s->fd, (struct sockaddr *)&server, sizeof server) == 0) {
    s->state = auth_mode ? CHALLENGE : SENDING;
  } else if (errno == EINPROGRESS) {
    s->state = CONNECTING;
    return;
  } else {
    fail(s, "connect", errno, t);
    return;
  }
  if (!auth_mode) {
    memcpy(s->out, HELLO, HELLO_LEN);
    s->out_len = s->first_len = HELLO_LEN;
  }
  advance(s, t);
}

/* Moves the connection on as far as the socket allows (edge-triggered). */
static void advance(struct slot *s, double t) {
  for (;;) {
    switch (s->state) {
      case IDLE:
        return;
      case CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
          fail(s, "connect", err, t);
          return;
        }
        /* Called only on an event, so the connect has completed. */
        if (auth_mode) {
          s->state = CHALLENGE;
        } else {
          memcpy(s->out, HELLO, HELLO_LEN);
          s->out_len = s->first_len = HELLO_LEN;
          s->state = SENDING;
        }
        break;
      }
      case CHALLENGE: {
        ssize_t n = recv(s->fd, s->in + s->have, CHALLENGE_LEN - s->have, 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) return;
          fail(s, "read challenge", errno, t);
          return;
        }
        if (n == 0) {
          fail(s, "closed before the challenge", 0, t);
          return;
        }
        s->have += n;
        if (s->have < CHALLENGE_LEN) break;
        size_t out_len = 0;
        if (!EVP_MAC_init(mac, NULL, 0, NULL) ||
            !EVP_MAC_update(mac, s->in, CHALLENGE_LEN) ||
            !EVP_MAC_final(mac, s->out, &out_len, MAX_DIGEST) ||
            out_len != digest_len) {
          fail(s, "HMAC", 0, t);
          return;
        }
        memcpy(s->out + out_len, HELLO, HELLO_LEN);
        s->first_len = out_len;
        s->out_len = out_len + HELLO_LEN;
        s->state = SENDING;
        break;
      }
      case SENDING: {
        /* The digest and the message go as two writes. */
        size_t end = s->sent < s->first_len ? s->first_len : s->out_len;
        ssize_t n = send(s->fd, s->out + s->sent, end - s->sent, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) return;
          fail(s, "write", errno, t);
          return;
        }
        s->sent += n;
        if (s->sent == s->out_len) {
          s->have = 0;
          s->state = ECHO;
        }
        break;
      }
      case ECHO: {
        ssize_t n = recv(s->fd, s->in + s->have, HELLO_LEN - s->have, 0);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) return;
          fail(s, "read echo", errno, t);
          return;
        }
        if (n == 0) {
          fail(s, auth_mode ? "closed before the echo (key refused?)"
                            : "closed before the echo",
               0, t);
          return;
        }
        s->have += n;
        if (s->have < HELLO_LEN) break;
        if (memcmp(s->in, HELLO, HELLO_LEN) != 0) {
          fail(s, "wrong echo", 0, t);
          return;
        }
        finish(s, 1, now());
        return;
      }
    }
  }
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted[0..n-1], in ms. */
static double percentile_ms(const double *sorted, long n, double p) {
  if (n == 0) return 0;
  long rank = (long)ceil(p * n);
  if (rank < 1) rank = 1;
  return sorted[rank - 1] * 1000;
}

static void print_json_string(const char *text) {
  putchar('"');
  for (const char *p = text; *p; p++) {
    if (*p == '"' || *p == '\\') putchar('\\');
    if ((unsigned char)*p < 0x20) continue;
    putchar(*p);
  }
  putchar('"');
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *key = getenv("CONNAUTH_SECRET");
  const char *digest = "sha256";
  int opt;
  while ((opt = getopt(argc, argv, "H:b:k:a:d:T:i:w:Lh")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'b':
        bind_source = 1;
        memset(&source, 0, sizeof source);
        source.sin_family = AF_INET;
        if (inet_pton(AF_INET, optarg, &source.sin_addr) != 1)
          usage_exit("Cannot use -b: expected an IPv4 address");
        break;
      case 'k': key = optarg; break;
      case 'a': digest = optarg; break;
      case 'd': deadline_s = parse_seconds(optarg, "-d"); break;
      case 'T': limit_s = parse_seconds(optarg, "-T"); break;
      case 'i': interval_s = parse_long(optarg, 0, 3600000, "-i") / 1000.0; break;
      case 'w': within_s = parse_long(optarg, 1, 3600000, "-w") / 1000.0; break;
      case 'L': want_list = 1; break;
      case 'h':
        fputs(HELP, stdout);
        return 0;
      default: usage_exit(NULL);
    }
  }
  if (argc - optind != 4) usage_exit("expected PORT N C auth|raw");
  long port = parse_long(argv[optind], 1, 65535, "PORT");
  total = parse_long(argv[optind + 1], 1, 100000000, "N");
  concurrency = parse_long(argv[optind + 2], 1, 100000, "C");
  if (strcmp(argv[optind + 3], "auth") == 0)
    auth_mode = 1;
  else if (strcmp(argv[optind + 3], "raw") != 0)
    usage_exit("Cannot use the mode: expected auth or raw");
  if (concurrency > total) concurrency = total;

  memset(&server, 0, sizeof server);
  server.sin_family = AF_INET;
  server.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &server.sin_addr) != 1)
    usage_exit("Cannot use -H: expected an IPv4 address");

  if (auth_mode) {
    if (!key || !*key)
      usage_exit("Cannot run auth mode: set CONNAUTH_SECRET (or pass -k SECRET)");
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
        OSSL_PARAM_construct_end()};
    if (!mac || !EVP_MAC_init(mac, (const unsigned char *)key, strlen(key), params))
      usage_exit("Cannot set up HMAC: unknown digest (-a)");
    digest_len = EVP_MAC_CTX_get_mac_size(mac);
    if (digest_len == 0 || digest_len > MAX_DIGEST)
      usage_exit("Cannot set up HMAC: unsupported digest size");
  }

  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
      limit.rlim_cur < (rlim_t)concurrency + 16) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < (rlim_t)concurrency + 16) {
      fprintf(stderr, "connload: Cannot open %ld sockets: the file limit is %lu; "
                      "raise it with ulimit -n\n",
              concurrency, (unsigned long)limit.rlim_cur);
      return 2;
    }
  }

  latency = malloc(sizeof *latency * total);
  struct slot *slots = calloc(concurrency, sizeof *slots);
  struct epoll_event *events = malloc(sizeof *events * concurrency);
  if (want_list) fail_reason = calloc(total, sizeof *fail_reason);
  if (!latency || !slots || !events || (want_list && !fail_reason)) {
    fprintf(stderr, "connload: Cannot allocate for N=%ld\n", total);
    return 1;
  }
  for (long i = 0; i < total; i++) latency[i] = NAN;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    perror("connload: epoll_create1");
    return 1;
  }
  struct sigaction action = {.sa_handler = on_signal};
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  signal(SIGPIPE, SIG_IGN);

  run_start = now();
  double run_end = run_start;
  for (long i = 0; i < concurrency; i++) {
    slots[i].fd = -1;
    slots[i].state = IDLE;
    slots[i].next_start = run_start;
  }
  while (!stopping) {
    double t = now();
    int may_start = started_count < total && !(limit_s > 0 && t - run_start >= limit_s);
    int active = 0;
    double wake = t + 1;
    for (long i = 0; i < concurrency; i++) {
      struct slot *s = &slots[i];
      if (s->state != IDLE && t >= s->deadline) {
        timeout_count++;
        fail(s, "deadline", 0, t);
      }
      if (s->state == IDLE && may_start && started_count < total &&
          s->next_start <= t)
        start(s, t);
      if (s->state != IDLE) {
        active = 1;
        if (s->deadline < wake) wake = s->deadline;
      } else if (may_start && started_count < total && s->next_start < wake) {
        wake = s->next_start;
      }
    }
    if (!active && (!may_start || started_count >= total)) break;
    int wait_ms = (int)ceil((wake - now()) * 1000);
    if (wait_ms < 0) wait_ms = 0;
    int count = epoll_wait(epfd, events, (int)concurrency, wait_ms);
    if (count < 0) {
      if (errno == EINTR) continue;
      perror("connload: epoll_wait");
      return 1;
    }
    t = now();
    for (int i = 0; i < count; i++) {
      struct slot *s = events[i].data.ptr;
      if (s->state != IDLE) advance(s, t);
    }
  }
  run_end = now();
  for (long i = 0; i < concurrency; i++) {
    if (slots[i].state != IDLE) {
      close(slots[i].fd);
      if (fail_reason) fail_reason[slots[i].index] = "stopped";
    }
  }

  double *sorted = malloc(sizeof *sorted * (ok_count ? ok_count : 1));
  long k = 0;
  for (long i = 0; i < total; i++)
    if (latency[i] >= 0) sorted[k++] = latency[i];
  qsort(sorted, k, sizeof *sorted, compare_double);
  double elapsed = run_end - run_start;
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
               usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  printf("{\"mode\":\"%s\",\"n\":%ld,\"c\":%ld,\"ok\":%ld,\"errors\":%ld,"
         "\"timeouts\":%ld,\"unfinished\":%ld,\"elapsed_s\":%.4f,"
         "\"rate\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
         "\"cpu_s\":%.4f",
         auth_mode ? "auth" : "raw", total, concurrency, ok_count, error_count,
         timeout_count, total - ok_count - error_count, elapsed,
         elapsed > 0 ? ok_count / elapsed : 0, percentile_ms(sorted, k, 0.5),
         percentile_ms(sorted, k, 0.99), k ? sorted[k - 1] * 1000 : 0, cpu);
  if (within_s > 0) printf(",\"within\":%ld", within_count);
  printf(",\"first_error\":");
  print_json_string(first_error);
  if (want_list) {
    printf(",\"lat_ms\":[");
    for (long i = 0; i < started_count; i++) {
      if (i) putchar(',');
      if (latency[i] >= 0)
        printf("%.3f", latency[i] * 1000);
      else
        printf("-1");
    }
    printf("],\"fail\":[");
    for (long i = 0; i < started_count; i++) {
      if (i) putchar(',');
      print_json_string(fail_reason[i] ? fail_reason[i] : "");
    }
    putchar(']');
  }
  printf("}\n");
  fflush(stdout);
  return 0;
}
