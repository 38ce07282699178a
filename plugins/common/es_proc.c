/* A handle on another process that a reused pid cannot fool.
 *
 * A pid is only a number: once its process has exited and been reaped, the kernel may give it to
 * any new process, so "read /proc/PID/exe, then /proc/PID/status, then /proc/PID/cwd" can read
 * three different processes. Two handles cannot be reused:
 *
 *   - a pidfd (pidfd_open(2), Linux 5.3) names one process for its whole life; signal 0 through
 *     it (pidfd_send_signal(2)) fails with ESRCH once that process has been reaped, whatever now
 *     holds its pid;
 *   - a descriptor of the directory /proc/PID is tied to the process it was opened on: after that
 *     process is reaped, reads through it fail (ESRCH/ENOENT), they never reach a newcomer.
 *
 * es_proc_open takes the pidfd first, then opens /proc/PID, then checks through the pidfd that the
 * process is still there. A pid stays with its process until the process is reaped, so /proc/PID
 * was opened on the pidfd's process. Every fact is then read relative to that directory
 * descriptor, and a caller that needs the process alive at the end (the starter's parent must
 * still be its parent) checks es_proc_alive again after reading.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "es_proc.h"

static int pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int es_proc_alive(const struct es_proc *p)
{
    return p->pidfd >= 0 && syscall(SYS_pidfd_send_signal, p->pidfd, 0, NULL, 0) == 0;
}

int es_proc_open(struct es_proc *p, pid_t pid)
{
    char path[64];

    p->pid = pid;
    p->pidfd = p->dirfd = -1;
    if (pid <= 0) {
        errno = ESRCH;
        return -1;
    }
    /* 1. the pidfd: from now on this process, and no later holder of its pid */
    p->pidfd = pidfd_open(pid);
    if (p->pidfd < 0)
        return -1;
    /* 2. its /proc directory, by pid */
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    p->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* 3. still the pidfd's process: then /proc/PID above was opened on it */
    if (p->dirfd < 0 || !es_proc_alive(p)) {
        int e = p->dirfd < 0 ? errno : ESRCH;
        es_proc_close(p);
        errno = e;
        return -1;
    }
    return 0;
}

void es_proc_close(struct es_proc *p)
{
    if (p->pidfd >= 0)
        close(p->pidfd);
    if (p->dirfd >= 0)
        close(p->dirfd);
    p->pidfd = p->dirfd = -1;
}

ssize_t es_proc_link(const struct es_proc *p, const char *name, char *buf, size_t len)
{
    ssize_t n = p->dirfd >= 0 ? readlinkat(p->dirfd, name, buf, len - 1) : -1;
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? n : -1;
}

long es_proc_status(const struct es_proc *p, const char *field, int index)
{
    char line[512];
    long value = -1;
    int fd = p->dirfd >= 0 ? openat(p->dirfd, "status", O_RDONLY | O_CLOEXEC) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0) {
            char *s = line + strlen(field), *end;
            for (int i = 0; i <= index; i++) {
                errno = 0;
                value = strtol(s, &end, 10);
                if (end == s || errno != 0) {
                    value = -1;
                    break;
                }
                s = end;
            }
            break;
        }
    fclose(f);
    return value;
}

int es_proc_cwd_fd(const struct es_proc *p)
{
    return p->dirfd >= 0 ? openat(p->dirfd, "cwd", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
}
