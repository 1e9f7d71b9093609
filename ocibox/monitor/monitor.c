/*
 * ocibox-monitor: what stays with a detached container after `ocibox run -d` returns.
 *
 * One small process per container (podman has conmon for this; see DESIGN.md for why ocibox has its
 * own): it is the subreaper that adopted the container's PID 1, holds the container's stdio (two pipes,
 * or the pty's master), writes the output to a log file in the CRI (Kubernetes) format with rotation,
 * serves `ocibox attach` on a unix socket, and when PID 1 exits writes the exit status to a file and
 * execs the exit command (`ocibox container cleanup ID`), which records the exit, tears down and applies
 * the restart policy. It keeps no state the store does not have: if it is killed, the container keeps
 * running and every ocibox verb still manages it.
 *
 * It is exec'd by the process that created the container (already the subreaper, which PR_SET_CHILD_
 * SUBREAPER keeps across exec), with every fd it needs inherited:
 *
 *   ocibox-monitor --pid N [--stdout FD --stderr FD | --pty FD] [--stdin FD]
 *                  --log PATH [--log-max-size BYTES] [--log-max-files N]
 *                  --attach SOCKET_PATH --exit PATH -- EXIT_COMMAND [ARG...]
 *
 * Log lines: "<RFC 3339 time with ns, UTC> <stdout|stderr> <F|P> <bytes>\n", one per line of output; a
 * line longer than what one read brings, or output without a final newline, is split into P(artial)
 * entries ended by an F(ull) one, so nothing is lost or interleaved within a line. With a pty both
 * streams are one and logged as stdout.
 *
 * Attach socket (SOCK_SEQPACKET, one message per packet, first byte the kind):
 *   monitor -> client: 1 stdout bytes, 2 stderr bytes, 3 exit ("<status>")
 *   client -> monitor: 0 stdin bytes, 4 close stdin, 5 resize (uint16 rows, uint16 cols, native order)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define READ_SIZE (64 * 1024)
#define DRAIN_SECONDS 5

enum { STDIN_DATA = 0, STDOUT_DATA = 1, STDERR_DATA = 2, EXITED = 3, STDIN_CLOSE = 4, RESIZE = 5 };

static int pid1 = -1, out_fd = -1, err_fd = -1, pty_fd = -1, in_fd = -1;
static const char *log_path, *attach_path, *exit_path;
static long long log_max_size = 0;
static int log_max_files = 1;
static int log_fd = -1;
static long long log_size = 0;
static int listen_fd = -1, clients[MAX_CLIENTS];
static char **exit_argv;
/* a line of each stream that has not ended yet is logged as P entries; nothing to keep between reads */
static char inbuf[READ_SIZE];
static char outbuf[4 * READ_SIZE + 4096];

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ocibox-monitor: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(125);
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* a full disk loses log output, never the container */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* ------------------------------------------------------------------------------- the log */
static void open_log(int truncate) {
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
    if (log_fd < 0) die("cannot open the log %s: %s", log_path, strerror(errno));
    struct stat st;
    log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

/* docker's json-file rotation: log -> log.1 -> ... -> log.(N-1), the oldest dropped; N=1 truncates */
static void rotate(void) {
    char from[4096], to[4096];
    close(log_fd);
    if (log_max_files > 1) {
        for (int i = log_max_files - 1; i >= 1; i--) {
            if (i == 1) snprintf(from, sizeof from, "%s", log_path);
            else snprintf(from, sizeof from, "%s.%d", log_path, i - 1);
            snprintf(to, sizeof to, "%s.%d", log_path, i);
            rename(from, to); /* a missing one is fine */
        }
    }
    open_log(1);
}

static size_t timestamp(char *buf, size_t len) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, len - n, ".%09ldZ", ts.tv_nsec);
    return n;
}

/* One read's worth of output as log entries, one write (or one per rotation). */
static void log_output(const char *stream, const char *data, size_t len) {
    char ts[64];
    size_t tslen = timestamp(ts, sizeof ts);
    size_t used = 0;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t line = nl ? (size_t)(nl - data) + 1 : len;
        int partial = nl == NULL;
        size_t content = partial ? line : line - 1;
        size_t entry = tslen + 1 + strlen(stream) + 3 + content + 1;
        if (log_max_size > 0 && log_size + (long long)(used + entry) > log_max_size && (log_size > 0 || used > 0)) {
            write_all(log_fd, outbuf, used);
            log_size += (long long)used;
            used = 0;
            rotate();
        }
        if (used + entry > sizeof outbuf) {
            write_all(log_fd, outbuf, used);
            log_size += (long long)used;
            used = 0;
        }
        memcpy(outbuf + used, ts, tslen);
        used += tslen;
        used += (size_t)sprintf(outbuf + used, " %s %c ", stream, partial ? 'P' : 'F');
        memcpy(outbuf + used, data, content);
        used += content;
        outbuf[used++] = '\n';
        data += line;
        len -= line;
    }
    write_all(log_fd, outbuf, used);
    log_size += (long long)used;
}

/* ------------------------------------------------------------------------------- attach */
static void send_clients(int kind, const char *data, size_t len) {
    char msg[READ_SIZE + 1];
    if (len > READ_SIZE) len = READ_SIZE;
    msg[0] = (char)kind;
    memcpy(msg + 1, data, len);
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i] < 0) continue;
        if (send(clients[i], msg, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) {
            close(clients[i]); /* gone: a slow client misses output (it is in the log) */
            clients[i] = -1;
        }
    }
}

static void accept_client(void) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i] < 0) {
            clients[i] = fd;
            return;
        }
    }
    close(fd);
}

static void client_message(int i) {
    char msg[READ_SIZE + 1];
    ssize_t n = recv(clients[i], msg, sizeof msg, MSG_DONTWAIT);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        close(clients[i]);
        clients[i] = -1;
        return;
    }
    int stdin_fd = pty_fd >= 0 ? pty_fd : in_fd;
    if (msg[0] == STDIN_DATA && stdin_fd >= 0 && n > 1) {
        write_all(stdin_fd, msg + 1, (size_t)n - 1);
    } else if (msg[0] == STDIN_CLOSE) {
        if (pty_fd >= 0) write_all(pty_fd, "\x04", 1); /* EOF on a terminal: ^D */
        else if (in_fd >= 0) { close(in_fd); in_fd = -1; }
    } else if (msg[0] == RESIZE && pty_fd >= 0 && n >= 5) {
        struct winsize ws = {0};
        memcpy(&ws.ws_row, msg + 1, 2);
        memcpy(&ws.ws_col, msg + 3, 2);
        ioctl(pty_fd, TIOCSWINSZ, &ws);
    }
}

static void listen_attach(void) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(attach_path) >= sizeof addr.sun_path) die("attach socket path too long: %s", attach_path);
    strcpy(addr.sun_path, attach_path);
    unlink(attach_path);
    listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listen_fd, 8) < 0)
        die("cannot listen on %s: %s", attach_path, strerror(errno));
    chmod(attach_path, 0600);
}

/* ------------------------------------------------------------------------------- output */
/* Read once from a stream; 0 at EOF (the fd is then closed and set to -1). */
static int pump(int *fd, const char *stream, int kind) {
    ssize_t n = read(*fd, inbuf, sizeof inbuf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) { /* EOF, or EIO on a pty whose last slave closed */
        close(*fd);
        *fd = -1;
        return 0;
    }
    log_output(stream, inbuf, (size_t)n);
    send_clients(kind, inbuf, (size_t)n);
    return 1;
}

static void write_exit(int status) {
    char tmp[4096], text[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(tmp, sizeof tmp, "%s.tmp", exit_path);
    int n = snprintf(text, sizeof text, "%d %lld%09ld\n", status, (long long)ts.tv_sec, ts.tv_nsec);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        write_all(fd, text, (size_t)n);
        fsync(fd);
        close(fd);
        rename(tmp, exit_path);
    }
}

static int parse_int(const char *s, const char *what) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0') die("%s: not a number: %s", what, s);
    return (int)v;
}

int main(int argc, char **argv) {
    for (int i = 0; i < MAX_CLIENTS; i++) clients[i] = -1;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { i++; break; }
        if (i + 1 >= argc) die("%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--pid") == 0) pid1 = parse_int(v, a);
        else if (strcmp(a, "--stdout") == 0) out_fd = parse_int(v, a);
        else if (strcmp(a, "--stderr") == 0) err_fd = parse_int(v, a);
        else if (strcmp(a, "--pty") == 0) pty_fd = parse_int(v, a);
        else if (strcmp(a, "--stdin") == 0) in_fd = parse_int(v, a);
        else if (strcmp(a, "--log") == 0) log_path = v;
        else if (strcmp(a, "--log-max-size") == 0) log_max_size = atoll(v);
        else if (strcmp(a, "--log-max-files") == 0) log_max_files = parse_int(v, a);
        else if (strcmp(a, "--attach") == 0) attach_path = v;
        else if (strcmp(a, "--exit") == 0) exit_path = v;
        else die("unknown option %s", a);
    }
    if (pid1 <= 0 || !log_path || !attach_path || !exit_path || i >= argc) die("usage: see monitor.c");
    exit_argv = argv + i;
    if (log_max_files < 1) log_max_files = 1;

    /* Signals: SIGCHLD through a signalfd; the monitor is alone in its session and must outlive a
     * hangup, a stray ^C or TERM; only SIGKILL ends it early. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("signalfd: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);

    open_log(0);
    listen_attach();
    int status = -1;
    time_t drain_until = 0;
    for (;;) {
        /* PID 1 may have exited before this program ran (its SIGCHLD went to our former self). */
        if (status < 0) {
            int ws;
            pid_t r;
            while ((r = waitpid(-1, &ws, WNOHANG)) > 0) {
                if (r == pid1) status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            }
            if (status >= 0) drain_until = time(NULL) + DRAIN_SECONDS;
        }
        int out = pty_fd >= 0 ? pty_fd : out_fd;
        if (status >= 0 && ((out < 0 && err_fd < 0) || time(NULL) >= drain_until)) break;
        struct pollfd p[4 + MAX_CLIENTS];
        int n = 0;
        p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = out, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = pty_fd >= 0 ? -1 : err_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        for (int c = 0; c < MAX_CLIENTS; c++) p[n++] = (struct pollfd){.fd = clients[c], .events = POLLIN};
        if (poll(p, (nfds_t)n, status >= 0 ? 200 : -1) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {}
        }
        if (p[1].revents) {
            if (pty_fd >= 0) pump(&pty_fd, "stdout", STDOUT_DATA);
            else pump(&out_fd, "stdout", STDOUT_DATA);
        }
        if (p[2].revents) pump(&err_fd, "stderr", STDERR_DATA);
        if (p[3].revents) accept_client();
        for (int c = 0; c < MAX_CLIENTS; c++)
            if (p[4 + c].revents && clients[c] >= 0) client_message(c);
    }
    write_exit(status);
    char text[16];
    int len = snprintf(text, sizeof text, "%d", status);
    send_clients(EXITED, text, (size_t)len);
    for (int c = 0; c < MAX_CLIENTS; c++) if (clients[c] >= 0) close(clients[c]);
    close(listen_fd);
    unlink(attach_path);
    fsync(log_fd);
    close(log_fd);
    if (in_fd >= 0) close(in_fd);
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execv(exit_argv[0], exit_argv);
    die("cannot run the exit command %s: %s", exit_argv[0], strerror(errno));
}
