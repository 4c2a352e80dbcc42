/*
 * flood: holds silent sockets against a server, for connauth's fairness
 * benchmark (bench/compare.ts --flood builds and runs it; see
 * bench/README.md).
 *
 * It opens A addresses x S sockets to HOST:PORT, each bound to its source
 * address: FIRST, FIRST+1, ... (default 127.0.1.1 up; every 127.0.0.0/8
 * address is a distinct source on Linux's loopback). A socket connects and
 * never sends a byte; it reads and discards what the server sends (the
 * challenge) and, as soon as the server closes or resets it, is closed and
 * opened again. A connect that fails is retried after 50 ms. One thread, one
 * epoll set, so it costs little next to the server it floods.
 *
 * Output, one JSON line each on stdout:
 *   - every REPORT ms (-r, default 1000) a status line:
 *     {"t":1.00,"held":4096,"connecting":0,"retrying":0,"opened":4096,
 *      "closed_by_server":0,"connect_errors":0,"cpu_s":0.02}
 *     held: connected and not yet closed by the server; connecting: connect
 *     in progress (the server's listen backlog may be full); opened and
 *     closed_by_server count since the start.
 *   - {"ready":true,...} once, the first time all A x S are held;
 *   - {"final":true,...} when it stops: after -T seconds, or on SIGINT or
 *     SIGTERM.
 *
 * Build: gcc -O2 -o flood bench/flood.c
 *
 * Usage: flood [-H host] [-f first_source] [-a addresses] [-s per_address]
 *              [-T seconds] [-r report_ms] PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char HELP[] =
    "Usage: flood [options] PORT\n"
    "Holds A x S silent sockets against HOST:PORT, each bound to its source\n"
    "address, re-opening each as soon as the server closes it.\n"
    "  -H HOST     server IPv4 address (default 127.0.0.1)\n"
    "  -f ADDR     first source address (default 127.0.1.1)\n"
    "  -a A        source addresses (default 64)\n"
    "  -s S        sockets per address (default 64)\n"
    "  -T SECONDS  stop after this long (default: until SIGINT/SIGTERM)\n"
    "  -r MS       status line every MS milliseconds (default 1000)\n";

enum state { CONNECTING, HELD, RETRYING };

struct sock {
  int fd;
  enum state state;
  unsigned address; /* index of the source address */
  double retry_at;
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

static void usage_exit(const char *why) {
  if (why) fprintf(stderr, "flood: %s\n", why);
  fputs(HELP, stderr);
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

static struct sockaddr_in server;
static uint32_t first_source; /* host byte order */
static int epfd;
static long held, connecting, retrying, opened, closed_by_server,
    connect_errors;
static char first_error[128];

static void note_error(const char *what, int err) {
  if (!first_error[0])
    snprintf(first_error, sizeof first_error, "%s: %s", what, strerror(err));
}

static void retry_later(struct sock *k, double t, const char *what, int err) {
  note_error(what, err);
  connect_errors++;
  if (k->fd >= 0) close(k->fd);
  k->fd = -1;
  k->state = RETRYING;
  k->retry_at = t + 0.05;
  retrying++;
}

static void open_socket(struct sock *k, double t) {
  k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (k->fd < 0) {
    retry_later(k, t, "socket", errno);
    return;
  }
  int one = 1;
  setsockopt(k->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in source = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(first_source + k->address)};
  if (bind(k->fd, (struct sockaddr *)&source, sizeof source) < 0) {
    retry_later(k, t, "bind", errno);
    return;
  }
  struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                              .data.ptr = k};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, k->fd, &event) < 0) {
    retry_later(k, t, "epoll_ctl", errno);
    return;
  }
  if (connect(k->fd, (struct sockaddr *)&server, sizeof server) == 0) {
    k->state = HELD;
    held++;
    opened++;
  } else if (errno == EINPROGRESS) {
    k->state = CONNECTING;
    connecting++;
  } else {
    retry_later(k, t, "connect", errno);
  }
}

/* Reads and discards; returns 1 when the server closed or reset the socket. */
static int drain(struct sock *k) {
  char buffer[512];
  for (;;) {
    ssize_t n = recv(k->fd, buffer, sizeof buffer, 0);
    if (n > 0) continue;
    if (n == 0) return 1;
    if (errno == EAGAIN || errno == EINTR) return 0;
    return 1;
  }
}

static void on_event(struct sock *k, uint32_t events, double t) {
  if (k->state == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    connecting--;
    if (err) {
      retry_later(k, t, "connect", err);
      return;
    }
    k->state = HELD;
    held++;
    opened++;
  }
  if (k->state == HELD &&
      ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0)) {
    if (drain(k)) {
      close(k->fd);
      k->fd = -1;
      held--;
      closed_by_server++;
      open_socket(k, t);
    }
  }
}

static void report(const char *kind, double t0) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
               usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  printf("{%s\"t\":%.2f,\"held\":%ld,\"connecting\":%ld,\"retrying\":%ld,"
         "\"opened\":%ld,\"closed_by_server\":%ld,\"connect_errors\":%ld,"
         "\"cpu_s\":%.3f,\"first_error\":\"%s\"}\n",
         kind, now() - t0, held, connecting, retrying, opened, closed_by_server,
         connect_errors, cpu, first_error);
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *first = "127.0.1.1";
  long addresses = 64, per_address = 64;
  double limit_s = 0, report_s = 1;
  int opt;
  while ((opt = getopt(argc, argv, "H:f:a:s:T:r:h")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'f': first = optarg; break;
      case 'a': addresses = parse_long(optarg, 1, 65536, "-a"); break;
      case 's': per_address = parse_long(optarg, 1, 60000, "-s"); break;
      case 'T': limit_s = parse_long(optarg, 1, 86400, "-T"); break;
      case 'r': report_s = parse_long(optarg, 10, 3600000, "-r") / 1000.0; break;
      case 'h': fputs(HELP, stdout); return 0;
      default: usage_exit(NULL);
    }
  }
  if (argc - optind != 1) usage_exit("expected PORT");
  long port = parse_long(argv[optind], 1, 65535, "PORT");
  memset(&server, 0, sizeof server);
  server.sin_family = AF_INET;
  server.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &server.sin_addr) != 1)
    usage_exit("Cannot use -H: expected an IPv4 address");
  struct in_addr first_addr;
  if (inet_pton(AF_INET, first, &first_addr) != 1)
    usage_exit("Cannot use -f: expected an IPv4 address");
  first_source = ntohl(first_addr.s_addr);
  long total = addresses * per_address;
  if (total > 1000000) usage_exit("Cannot hold more than 1000000 sockets");

  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < (rlim_t)total + 16) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < (rlim_t)total + 16) {
      fprintf(stderr, "flood: Cannot hold %ld sockets: the file limit is %lu; "
                      "raise it with ulimit -n\n",
              total, (unsigned long)limit.rlim_cur);
      return 2;
    }
  }

  struct sock *socks = calloc(total, sizeof *socks);
  struct epoll_event *events = malloc(sizeof *events * 1024);
  if (!socks || !events) {
    fprintf(stderr, "flood: Cannot allocate for %ld sockets\n", total);
    return 1;
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    perror("flood: epoll_create1");
    return 1;
  }
  struct sigaction action = {.sa_handler = on_signal};
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  signal(SIGPIPE, SIG_IGN);

  double t0 = now();
  for (long i = 0; i < total; i++) {
    socks[i].fd = -1;
    socks[i].address = (unsigned)(i / per_address);
    open_socket(&socks[i], t0);
  }
  int ready = 0;
  double next_report = t0 + report_s;
  while (!stopping) {
    double t = now();
    if (limit_s > 0 && t - t0 >= limit_s) break;
    if (!ready && held == total) {
      ready = 1;
      report("\"ready\":true,", t0);
    }
    if (t >= next_report) {
      report("", t0);
      next_report += report_s;
      if (next_report < t) next_report = t + report_s;
    }
    double wake = next_report;
    if (retrying > 0) {
      for (long i = 0; i < total; i++) {
        struct sock *k = &socks[i];
        if (k->state != RETRYING) continue;
        if (k->retry_at <= t) {
          retrying--;
          open_socket(k, t);
        } else if (k->retry_at < wake) {
          wake = k->retry_at;
        }
      }
    }
    int wait_ms = (int)ceil((wake - now()) * 1000);
    if (wait_ms < 0) wait_ms = 0;
    int count = epoll_wait(epfd, events, 1024, wait_ms);
    if (count < 0) {
      if (errno == EINTR) continue;
      perror("flood: epoll_wait");
      return 1;
    }
    t = now();
    for (int i = 0; i < count; i++) on_event(events[i].data.ptr, events[i].events, t);
  }
  report("\"final\":true,", t0);
  for (long i = 0; i < total; i++)
    if (socks[i].fd >= 0) close(socks[i].fd);
  return 0;
}
