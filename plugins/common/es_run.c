/* Run the resolver as a child with a clean environment and capture its output; the caller
 * replays the log only when something went wrong (pyxis's pattern). Shared by the Slurm
 * plugin and the Grid Engine starter. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "es_run.h"

#define ES_RUN_TIMEOUT_MS 120000

static char *const clean_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", NULL};

static void child(char *const argv[], int become_root, int out, int err)
{
    /* In slurmstepd's user_init the real uid is root and the effective uid the user:
     * take root back fully for the resolver, which drops to the user itself to read ~/.chos.
     * The uid first: only an effective uid 0 brings back the capability to change groups. */
    if (become_root && (setresuid(0, 0, 0) != 0 || setresgid(0, 0, 0) != 0 || setgroups(0, NULL) != 0)) {
        dprintf(err, ES_PREFIX "cannot become root for the resolver: %s\n", strerror(errno));
        _exit(ENVSCHED_EXIT_SETUP_FAILED);
    }
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(ENVSCHED_EXIT_SETUP_FAILED);
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)      /* Linux >= 5.9; else the usual range */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    execve(argv[0], argv, clean_env);
    dprintf(2, ES_PREFIX "cannot execute the resolver %s: %s\n", argv[0], strerror(errno));
    _exit(ENVSCHED_EXIT_NOT_FOUND);
}

static void append(char *buf, size_t *len, size_t cap, const char *data, size_t n)
{
    if (*len + n >= cap)
        n = cap - 1 - *len;
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

int es_run(char *const argv[], int become_root, struct es_run *r)
{
    int out[2], err[2], status = 0;
    pid_t pid;

    memset(r, 0, sizeof *r);
    r->status = -1;
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        snprintf(r->err, sizeof r->err, ES_PREFIX "pipe: %s\n", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(r->err, sizeof r->err, ES_PREFIX "fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0)
        child(argv, become_root, out[1], err[1]);
    close(out[1]);
    close(err[1]);

    struct pollfd fds[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int open_fds = 2;
    while (open_fds > 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = ES_RUN_TIMEOUT_MS - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0) {
            kill(pid, SIGKILL);
            append(r->err, &r->err_len, sizeof r->err, ES_PREFIX "resolver timed out\n",
                   strlen(ES_PREFIX "resolver timed out\n"));
            break;
        }
        int n = poll(fds, 2, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[4096];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                append(r->out, &r->out_len, sizeof r->out, chunk, (size_t)got);
            } else {
                append(r->err, &r->err_len, sizeof r->err, chunk, (size_t)got);
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (got < 0)
        r->status = -1;
    else
        r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r->status == 0 ? 0 : -1;
}

/* The one line for the user: the resolver's last "envsched: " line, else a generic one. */
const char *es_user_line(const struct es_run *r, char *buf, size_t len)
{
    const char *last = NULL;

    for (const char *p = r->err; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, ES_PREFIX, strlen(ES_PREFIX)) == 0)
            last = p;
    if (last == NULL) {
        snprintf(buf, len, ES_PREFIX "the environment could not be prepared (exit %d); "
                 "the node's scheduler log has the details", r->status);
        return buf;
    }
    size_t n = strcspn(last, "\n");
    snprintf(buf, len, "%.*s", (int)n, last);
    return buf;
}
