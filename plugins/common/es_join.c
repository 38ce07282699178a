/* Enter a pinned view and drop privileges for good: see es_join.h. One comment per step. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/nsfs.h>

#include "envsched_exit.h"
#include "es_join.h"

static int drop(uid_t uid, gid_t gid, char *err, size_t errlen);
static int start_in_pid_namespace(char *err, size_t errlen);

/* The user namespace that owns the mount namespace `mnt_ns`, when it is not ours (a user's own
 * view): a new descriptor; -1 when it is ours (an admin's view); -2 on error (errno set). */
int es_foreign_userns(int mnt_ns)
{
    struct stat owner, ours;
    int fd = ioctl(mnt_ns, NS_GET_USERNS);

    if (fd < 0)
        return -2;
    if (fstat(fd, &owner) != 0 || stat("/proc/self/ns/user", &ours) != 0) {
        close(fd);
        return -2;
    }
    if (owner.st_ino == ours.st_ino && owner.st_dev == ours.st_dev) {
        close(fd);
        return -1;                                 /* ours: an admin's view */
    }
    return fd;
}

int es_join_and_drop(int pin_dirfd, int has_view, const char *pin_path, uid_t uid, gid_t gid, char *err,
                     size_t errlen)
{
    int ns = -1, userns = -1, pidns = 0;

    /* 1. the view: its pinned mount namespace, opened without following a link planted in place
     *    of it */
    if (has_view) {
        ns = openat(pin_dirfd, "mnt", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (ns < 0) {
            snprintf(err, errlen, "cannot enter the job's environment (open %s/mnt: %s)", pin_path, strerror(errno));
            close(pin_dirfd);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
        /* a user's own view (a user image): its mount namespace belongs to the user's own user
         *    namespace, and the user controls the tree in it. Root only takes that namespace here;
         *    the view is entered after privileges are dropped (step 5). Decided by the namespace's
         *    owner, not by a file: root never setns into a view that is not owned by its own user
         *    namespace, whatever the pin directory says */
        userns = es_foreign_userns(ns);
        if (userns == -2) {
            snprintf(err, errlen, "cannot enter the job's environment (NS_GET_USERNS %s/mnt: %s)", pin_path,
                     strerror(errno));
            close(ns);
            close(pin_dirfd);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
        /* 1b. the job's isolation namespaces (pid, ipc, uts: pin/init, or ipc and uts bound in the
         *     pin), as root, an admin's view only (a user's own view never has them); before the
         *     view, whose /proc is the job's own (the init's start time is read in the host's) */
        if (userns == -1 && es_join_isolation(pin_dirfd, pin_path, &pidns, err, errlen) != 0) {
            close(ns);
            close(pin_dirfd);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
        if (userns == -1 && setns(ns, CLONE_NEWNS) != 0) {
            /*    an admin's view: setns moves our root and cwd into it (the caller chdirs later) */
            snprintf(err, errlen, "cannot enter the job's environment (setns %s/mnt: %s)", pin_path, strerror(errno));
            close(ns);
            close(pin_dirfd);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
    }
    close(pin_dirfd);
    int rc = drop(uid, gid, err, errlen);
    /* 4b. in a PID namespace, only our children are: the job is our child, we forward signals
     *     to it and exit as it does */
    if (rc == 0 && pidns)
        rc = start_in_pid_namespace(err, errlen);
    /* 5. a user's own view, as the user: its user namespace, then its mount namespace */
    if (rc == 0 && userns >= 0 && (setns(userns, CLONE_NEWUSER) != 0 || setns(ns, CLONE_NEWNS) != 0)) {
        snprintf(err, errlen, "cannot enter your image's environment (setns: %s)", strerror(errno));
        rc = ENVSCHED_EXIT_SETUP_FAILED;
    }
    if (userns >= 0)
        close(userns);
    if (ns >= 0)
        close(ns);
    return rc;
}

static int drop(uid_t uid, gid_t gid, char *err, size_t errlen)
{
    /* 2. real, effective and saved gid, then uid (a uid change first would forbid the gid one);
     *    the supplementary groups stay as the scheduler set them */
    if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        snprintf(err, errlen, "cannot drop privileges: %s", strerror(errno));
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    /* 3. all three ids are the user's, and root cannot be had back */
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid) {
        snprintf(err, errlen, "privileges not dropped");
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "privileges came back after dropping them");
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    /* 4. nothing the job executes gains privileges (set-user-ID files, file capabilities) */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    return 0;
}

int es_drop_privileges(uid_t uid, gid_t gid, char *err, size_t errlen)
{
    return drop(uid, gid, err, errlen);
}

unsigned long long es_start_time(int pid)
{
    char path[64], stat[1024];
    unsigned long long start = 0;
    char state = 0;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, stat, sizeof stat - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    stat[n] = '\0';
    char *p = strrchr(stat, ')');
    if (p == NULL || sscanf(p + 2, "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
                            &state, &start) != 2 || state == 'Z')
        return 0;
    return start;
}

int es_open_init(int pin_dirfd, int *flags, char *err, size_t errlen)
{
    char record[128], names[64];
    int pid = 0;
    unsigned long long start = 0;
    int fd = openat(pin_dirfd, "init", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT)
        return -2;
    ssize_t n = fd >= 0 ? read(fd, record, sizeof record - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n > 0)
        record[n] = '\0';
    if (n <= 0 || sscanf(record, "%d %llu %63s", &pid, &start, names) != 3 || pid <= 1) {
        snprintf(err, errlen, "the pin's init record is unreadable or malformed");
        return -1;
    }
    *flags = 0;
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save))
        *flags |= strcmp(name, "pid") == 0 ? CLONE_NEWPID : strcmp(name, "ipc") == 0 ? CLONE_NEWIPC
                  : strcmp(name, "uts") == 0 ? CLONE_NEWUTS : 0;
    /* the pidfd first, then the start time: the descriptor holds the very process we checked */
    fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 || es_start_time(pid) != start) {
        if (fd >= 0)
            close(fd);
        snprintf(err, errlen, "cannot start the job in its process namespace: it has ended (its init is gone)");
        return -1;
    }
    return fd;
}

int es_join_isolation(int pin_dirfd, const char *pin_path, int *pidns, char *err, size_t errlen)
{
    static const struct { const char *name; int type; } binds[] = {{"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}};
    int flags = 0, fd = es_open_init(pin_dirfd, &flags, err, errlen);

    if (fd == -1)
        return -1;
    if (fd >= 0) {
        /* the namespaces the init holds (pid, and ipc and uts with it): one setns on its pidfd */
        int rc = setns(fd, flags);
        if (rc != 0 && errno == ESRCH)          /* exited since (a zombie keeps its pidfd) */
            snprintf(err, errlen, "cannot start the job in its process namespace: it has ended (its init is gone)");
        else if (rc != 0)
            snprintf(err, errlen, "cannot enter the job's namespaces (setns %s/init: %s)", pin_path, strerror(errno));
        close(fd);
        *pidns = rc == 0 && (flags & CLONE_NEWPID);
        return rc == 0 ? 0 : -1;
    }
    /* without "pid": the ipc and uts namespaces bound in the pin */
    for (size_t i = 0; i < sizeof binds / sizeof binds[0]; i++) {
        fd = openat(pin_dirfd, binds[i].name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue;
        if (fd < 0 || setns(fd, binds[i].type) != 0) {
            snprintf(err, errlen, "cannot enter the job's %s namespace (%s %s/%s: %s)", binds[i].name,
                     fd < 0 ? "open" : "setns", pin_path, binds[i].name, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

static volatile pid_t job_pid;

static void forward(int sig)
{
    int saved = errno;
    if (job_pid > 0)
        kill(job_pid, sig);
    if (sig == SIGTSTP)
        raise(SIGSTOP);                  /* stopped like the job, so the shell sees it stop */
    errno = saved;
}

static int start_in_pid_namespace(char *err, size_t errlen)
{
    static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT,
                                    SIGALRM, SIGXCPU, SIGWINCH, SIGTSTP};
    pid_t pid = fork();

    if (pid < 0) {
        snprintf(err, errlen, errno == ENOMEM
                 ? "cannot start the job in its process namespace: it has ended (its init is gone)"
                 : "cannot start the job in its process namespace: %s", strerror(errno));
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    if (pid == 0) {
        /* the job, the first process of its in the namespace; killed if we die */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        return 0;
    }
    /* we stay outside, as the user: a signal for the job's pid (kill, not killpg, which reaches
     * both of us) goes on to the job; SIGKILL and SIGSTOP cannot, the job dies with us */
    job_pid = pid;
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaction(forwarded[i], &sa, NULL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            _exit(ENVSCHED_EXIT_INTERNAL);
    if (WIFSIGNALED(status)) {
        /* ended by a signal: so do we, for the scheduler's accounting (no core of ours) */
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
        _exit(128 + WTERMSIG(status));
    }
    _exit(WEXITSTATUS(status));
}
