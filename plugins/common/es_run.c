/* Run the resolver as a child with a clean environment and capture its output; the caller
 * replays the log only when something went wrong (pyxis's pattern). Shared by every C shim
 * (the Slurm plugin, the Grid Engine and Torque starters, the PAM module).
 *
 * Before the exec the child judges the program it is about to run as root (es_trusted_program):
 * the program, every directory above it, every symbolic link on the way and what it points to, and
 * the interpreter its "#!" line names, judged the same way. A program that fails is not run: exit 78
 * (ENVSCHED_EXIT_POLICY_INVALID, a configuration problem) with one line naming the path and why.
 *
 * The trust walk lives here rather than in es_trust.c because every shim links this file and not
 * all of them link es_trust.c (the Slurm plugin does not); the rule per file and directory is
 * es_trusted_path's: owned by root, not writable by group or others.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "es_run.h"

#define ES_RUN_TIMEOUT_MS 120000
#define ES_MAX_LINKS 40          /* the kernel's own limit on symbolic links in one lookup */
#define ES_MAX_INTERP 4          /* the kernel's BINPRM_MAX_RECURSION: scripts run by scripts */
#define ES_SHEBANG_MAX 256       /* the kernel's BINPRM_BUF_SIZE: what it reads of a "#!" line */

/* the child's environment; env(1) on a "#!" line searches this PATH, so es_trusted_program does */
#define ES_CLEAN_PATH "/usr/sbin:/usr/bin:/sbin:/bin"
static char *const clean_env[] = {"PATH=" ES_CLEAN_PATH, "LANG=C.UTF-8", NULL};

static int untrusted(const struct stat *st)
{
    return st->st_uid != 0 || (st->st_mode & (S_IWGRP | S_IWOTH));
}

/* Resolve an absolute path component by component the way the kernel does, judging what it
 * crosses: "/" and every directory must be root's and not writable by group or others; a symbolic
 * link must be root's (its mode means nothing; who can replace it is decided by the directory it
 * is in, judged already) and is followed, its target judged the same way; the final object must be
 * root's and not writable by group or others, and a directory (want_dir) or a regular file. On
 * success the resolved path (no symbolic links left) is in real. 0, or -1 with the reason in err
 * (errno set: ENOENT when something does not exist, EPERM when something is not trusted). */
static int trusted_walk(const char *path, int want_dir, char *real, size_t reallen, char *err, size_t errlen)
{
    char rest[2 * PATH_MAX], cur[PATH_MAX], next[PATH_MAX], link[PATH_MAX], tmp[2 * PATH_MAX];
    struct stat st;
    int links = 0;

    if (path[0] != '/') {
        snprintf(err, errlen, "%s: not an absolute path", path);
        errno = EINVAL;
        return -1;
    }
    if (lstat("/", &st) != 0 || untrusted(&st)) {
        snprintf(err, errlen, "/: must be owned by root and not writable by group or others");
        errno = EPERM;
        return -1;
    }
    if ((size_t)snprintf(rest, sizeof rest, "%s", path) >= sizeof rest) {
        snprintf(err, errlen, "%.200s...: path too long", path);
        errno = ENAMETOOLONG;
        return -1;
    }
    cur[0] = '\0';                                   /* "" is "/" */
    memset(&st, 0, sizeof st);
    st.st_mode = S_IFDIR;
    for (;;) {
        char *comp = rest;
        while (*comp == '/')
            comp++;
        if (*comp == '\0')
            break;
        size_t n = strcspn(comp, "/");
        char *after = comp + n;                       /* "" or "/..." */
        if (n == 1 && comp[0] == '.') {
            memmove(rest, after, strlen(after) + 1);
            continue;
        }
        if (n == 2 && comp[0] == '.' && comp[1] == '.') {
            char *slash = strrchr(cur, '/');
            if (slash)
                *slash = '\0';
            memmove(rest, after, strlen(after) + 1);
            continue;
        }
        if ((size_t)snprintf(next, sizeof next, "%s/%.*s", cur, (int)n, comp) >= sizeof next) {
            snprintf(err, errlen, "%.200s...: path too long", next);
            errno = ENAMETOOLONG;
            return -1;
        }
        memmove(rest, after, strlen(after) + 1);
        if (lstat(next, &st) != 0) {
            int e = errno;
            snprintf(err, errlen, "%s: %s", next, strerror(e));
            errno = e;
            return -1;
        }
        if (S_ISLNK(st.st_mode)) {
            if (st.st_uid != 0) {
                snprintf(err, errlen, "%s: a symbolic link not owned by root", next);
                errno = EPERM;
                return -1;
            }
            if (++links > ES_MAX_LINKS) {
                snprintf(err, errlen, "%s: too many levels of symbolic links", path);
                errno = ELOOP;
                return -1;
            }
            ssize_t len = readlink(next, link, sizeof link - 1);
            if (len <= 0) {
                int e = len < 0 ? errno : EINVAL;
                snprintf(err, errlen, "%s: %s", next, strerror(e));
                errno = e;
                return -1;
            }
            link[len] = '\0';
            if ((size_t)snprintf(tmp, sizeof tmp, "%s%s", link, rest) >= sizeof rest) {
                snprintf(err, errlen, "%s: path too long", next);
                errno = ENAMETOOLONG;
                return -1;
            }
            memcpy(rest, tmp, strlen(tmp) + 1);
            if (link[0] == '/')
                cur[0] = '\0';                       /* absolute: from "/" again */
            memset(&st, 0, sizeof st);                /* a link to "/" ends on "/" */
            st.st_mode = S_IFDIR;
            continue;
        }
        if (untrusted(&st)) {
            snprintf(err, errlen, "%s: must be owned by root and not writable by group or others", next);
            errno = EPERM;
            return -1;
        }
        if (rest[strspn(rest, "/")] != '\0' && !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s: %s", next, strerror(ENOTDIR));
            errno = ENOTDIR;
            return -1;
        }
        memcpy(cur, next, strlen(next) + 1);
    }
    if (cur[0] == '\0')
        snprintf(cur, sizeof cur, "/");
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a %s", cur, want_dir ? "directory" : "regular file");
        errno = want_dir ? ENOTDIR : EACCES;
        return -1;
    }
    snprintf(real, reallen, "%s", cur);
    return 0;
}

int es_trusted_dir(const char *path, char *err, size_t errlen)
{
    char real[PATH_MAX];
    return trusted_walk(path, 1, real, sizeof real, err, errlen);
}

/* The interpreter a "#!" line names and its optional argument, parsed as the kernel does
 * (binfmt_script): blanks after "#!", the name up to a blank, the rest of the line, trimmed, as one
 * argument. 1 with a "#!" line, 0 without (a binary), -1 for one the kernel would not run. */
static int shebang(const char *real, char *interp, size_t ilen, char *arg, size_t alen, char *err, size_t errlen)
{
    char buf[ES_SHEBANG_MAX + 1];

    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        /* root reads anything; a user who cannot read a file cannot have it interpreted either */
        if (errno == EACCES && geteuid() != 0)
            return 0;
        snprintf(err, errlen, "%s: %s", real, strerror(errno));
        return -1;
    }
    ssize_t got = read(fd, buf, ES_SHEBANG_MAX);
    close(fd);
    if (got < 0) {
        snprintf(err, errlen, "%s: %s", real, strerror(errno));
        return -1;
    }
    buf[got] = '\0';
    if (got < 2 || buf[0] != '#' || buf[1] != '!')
        return 0;
    char *nl = memchr(buf, '\n', (size_t)got);
    if (nl == NULL) {
        snprintf(err, errlen, "%s: its \"#!\" line is longer than %d bytes", real, ES_SHEBANG_MAX);
        return -1;
    }
    *nl = '\0';
    char *p = buf + 2;
    p += strspn(p, " \t");
    size_t n = strcspn(p, " \t");
    if (n == 0 || n >= ilen) {
        snprintf(err, errlen, "%s: no usable interpreter on its \"#!\" line", real);
        return -1;
    }
    snprintf(interp, ilen, "%.*s", (int)n, p);
    p += n;
    p += strspn(p, " \t");
    size_t m = strlen(p);
    while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t' || p[m - 1] == '\r'))
        m--;
    snprintf(arg, alen, "%.*s", (int)m, p);
    return 1;
}

static int trusted_program(const char *path, int depth, char *err, size_t errlen)
{
    char real[PATH_MAX], interp[ES_SHEBANG_MAX], arg[ES_SHEBANG_MAX], why[PATH_MAX + 256];

    if (trusted_walk(path, 0, real, sizeof real, err, errlen) != 0)
        return -1;
    errno = EPERM;                                    /* from here on: untrusted, or unusable */
    int rc = shebang(real, interp, sizeof interp, arg, sizeof arg, err, errlen);
    if (rc <= 0)
        return rc;
    if (depth >= ES_MAX_INTERP) {
        snprintf(err, errlen, "%s: interpreters nested deeper than %d", path, ES_MAX_INTERP);
        return -1;
    }
    if (interp[0] != '/') {
        snprintf(err, errlen, "%s: its interpreter %s is not an absolute path", path, interp);
        return -1;
    }
    if (trusted_program(interp, depth + 1, why, sizeof why) != 0) {
        snprintf(err, errlen, "its interpreter %s: %s", interp, why);
        return -1;
    }
    /* "#!/usr/bin/env NAME": env runs NAME from the clean PATH, so that program is judged too */
    const char *base = strrchr(interp, '/') + 1;
    if (strcmp(base, "env") != 0)
        return 0;
    if (arg[0] == '\0' || arg[0] == '-' || strpbrk(arg, " \t")) {
        snprintf(err, errlen, "%s: \"#!%s %s\" cannot be judged: name the interpreter by its absolute path",
                 path, interp, arg);
        return -1;
    }
    char found[PATH_MAX] = "";
    if (strchr(arg, '/')) {
        if (arg[0] != '/') {
            snprintf(err, errlen, "%s: its interpreter %s is not an absolute path", path, arg);
            return -1;
        }
        snprintf(found, sizeof found, "%s", arg);
    } else {
        const char *dirs = ES_CLEAN_PATH;
        while (*dirs && !found[0]) {
            size_t dl = strcspn(dirs, ":");
            char cand[PATH_MAX];
            snprintf(cand, sizeof cand, "%.*s/%s", (int)dl, dirs, arg);
            if (access(cand, X_OK) == 0)
                snprintf(found, sizeof found, "%s", cand);
            dirs += dl + (dirs[dl] == ':');
        }
        if (!found[0]) {
            snprintf(err, errlen, "%s: its interpreter %s is not in %s", path, arg, ES_CLEAN_PATH);
            return -1;
        }
    }
    if (trusted_program(found, depth + 1, why, sizeof why) != 0) {
        snprintf(err, errlen, "its interpreter %s: %s", found, why);
        return -1;
    }
    return 0;
}

int es_trusted_program(const char *path, char *err, size_t errlen)
{
    if (trusted_program(path, 0, err, errlen) == 0)
        return 0;
    /* ENOENT only when the program itself is missing: a missing interpreter is a broken install */
    int missing = errno == ENOENT && strncmp(err, "its interpreter ", 16) != 0;
    errno = missing ? ENOENT : EPERM;
    return -1;
}

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
    char why[PATH_MAX + 512];
    if (es_trusted_program(argv[0], why, sizeof why) != 0) {
        /* one line for the user (es_user_line takes the last "envsched: " line): a missing resolver
         * stays "not found"; anything else is a configuration problem */
        if (errno == ENOENT) {
            dprintf(2, ES_PREFIX "cannot execute the resolver %s: %s\n", argv[0], why);
            _exit(ENVSCHED_EXIT_NOT_FOUND);
        }
        dprintf(2, ES_PREFIX "the resolver %s is not trusted, not run: %s\n", argv[0], why);
        _exit(ENVSCHED_EXIT_POLICY_INVALID);
    }
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

int es_exec_trusted(char *const argv[], char *err, size_t errlen)
{
    char why[1024];

    if (argv == NULL || argv[0] == NULL) {
        snprintf(err, errlen, "no program to hand over to");
        return -1;
    }
    if (es_trusted_program(argv[0], why, sizeof why) != 0) {
        snprintf(err, errlen, "%s is not run: %s", argv[0], why);
        return -1;
    }
    execv(argv[0], argv);
    snprintf(err, errlen, "cannot execute %s: %s", argv[0], strerror(errno));
    return -1;
}
