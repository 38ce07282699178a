/* The session process joins the prepared view: setns(CLONE_NEWNS) in the calling process, so
 * everything the application forks after pam_open_session (sshd's session child and the shell,
 * su's shell) starts inside; with isolation namespaces, also the session's ipc and uts, and its
 * PID namespace for what it forks. Before that, descriptors of the namespaces the session was
 * opened in are kept (close-on-exec), so close_session can go back there to release the pin: the
 * resolver and run_dir are the host's, not the view's, and the resolver must not start inside the
 * PID namespace whose init it kills (it could not see that init, and the pin would stay).
 *
 * Only a pin of root's is joined: run_dir and every directory above it root's and not writable by
 * others (es_trusted_dir), run_dir, run_dir/<key> root's and not writable by others, each opened
 * O_NOFOLLOW relative to the one above, and the pin the resolver named must be exactly
 * run_dir/<key>/mnt for the key the module asked for.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/es_trust.h"
#include "es_pam.h"
#include "../common/es_join.h"

static int open_pin(const struct es_conf *c, const struct es_shim *s, int *dirfd, char *err, size_t errlen)
{
    char want[PATH_MAX + 96];

    snprintf(want, sizeof want, "%s/%s/mnt", c->run_dir, s->key);
    if (s->key[0] == '\0' || strchr(s->key, '/') || strcmp(want, s->pin) != 0) {
        snprintf(err, errlen, ES_PREFIX "the resolver's pin %.200s is not %.200s (is run_dir= the "
                 "policy's run_dir?)", s->pin, want);
        return -1;
    }
    char why[PATH_MAX + 256];
    /* run_dir= and every directory above it root's (a symbolic link on the way: root's, its target
     * judged too), then run_dir and the pin themselves opened O_NOFOLLOW and checked again */
    if (es_trusted_dir(c->run_dir, why, sizeof why) != 0) {
        snprintf(err, errlen, ES_PREFIX "run_dir %.200s is not trusted: %.400s", c->run_dir, why);
        return -1;
    }
    int dir = es_open_pin_dir(c->run_dir, s->key, why, sizeof why);
    if (dir < 0) {
        snprintf(err, errlen, ES_PREFIX "%.400s", why);
        return -1;
    }
    int fd = openat(dir, "mnt", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, ES_PREFIX "%.200s: %s", s->pin, strerror(errno));
        close(dir);
    } else
        *dirfd = dir;
    return fd;
}

int es_enter(const struct es_conf *c, const struct es_shim *s, struct es_host *out, char *err, size_t errlen)
{
    char cwd[PATH_MAX];

    out->mnt = out->ipc = out->uts = -1;
    int dir = -1;
    int fd = open_pin(c, s, &dir, err, errlen);
    if (fd < 0)
        return -1;
    struct es_host here = {open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC),
                           open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC),
                           open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC)};
    if (here.mnt < 0 || here.ipc < 0 || here.uts < 0) {
        snprintf(err, errlen, ES_PREFIX "/proc/self/ns: %s", strerror(errno));
        es_host_close(&here);
        close(fd);
        close(dir);
        return -1;
    }
    if (getcwd(cwd, sizeof cwd) == NULL)
        cwd[0] = '\0';
    /* the session process stays root in the view: never one that a user's own namespace owns
     * (a user image, which the resolver refuses for logins anyway) */
    int users = es_foreign_userns(fd);
    if (users != -1) {
        snprintf(err, errlen, ES_PREFIX "%s", users == -2 ? "cannot enter the prepared environment (NS_GET_USERNS)"
                 : "the prepared environment is a user's own image: not entered at login");
        if (users >= 0)
            close(users);
        close(fd);
        close(dir);
        es_host_close(&here);
        return -1;
    }
    /* the environment's isolation namespaces, before the view (whose /proc is the session's own):
     * the session process joins ipc and uts; with pid, what it forks from now on (the login
     * shell) starts in the session's PID namespace */
    int pidns = 0;
    char why[512];
    int rc = es_join_isolation(dir, s->pin, &pidns, why, sizeof why);
    close(dir);
    if (rc != 0) {
        snprintf(err, errlen, ES_PREFIX "%s", why);
        close(fd);
        es_leave(&here);                              /* undo what was joined; the pin is released */
        return -1;
    }
    if (setns(fd, CLONE_NEWNS) != 0) {
        snprintf(err, errlen, ES_PREFIX "cannot enter the prepared environment (setns: %s)", strerror(errno));
        close(fd);
        es_leave(&here);
        return -1;
    }
    close(fd);
    /* setns moved root and cwd to the view's root; keep the working directory where it exists */
    if (!(cwd[0] && chdir(cwd) == 0) && chdir("/") != 0) {
        /* "/" always exists in a view */
    }
    *out = here;
    return 0;
}

/* back to the namespaces the session was opened in: the mount namespace, ipc, uts, and its own
 * PID namespace for what it forks next (the resolver that releases the pin must not start in the
 * session's, whose init it kills) */
int es_leave(struct es_host *host)
{
    if (host->mnt < 0)
        return 0;
    /* the mount namespace first: the view's /proc is the job's, where we are not to be seen */
    int rc = setns(host->mnt, CLONE_NEWNS);
    int pid = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    rc |= setns(host->ipc, CLONE_NEWIPC) | setns(host->uts, CLONE_NEWUTS) | (pid < 0 ? -1 : setns(pid, CLONE_NEWPID));
    if (pid >= 0)
        close(pid);
    es_host_close(host);
    if (rc == 0 && chdir("/") != 0)
        return -1;
    return rc == 0 ? 0 : -1;
}

void es_host_close(struct es_host *host)
{
    int *fds[] = {&host->mnt, &host->ipc, &host->uts};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}
