/*
 * launch_bench: per-launch wall time of a short program (/bin/true) started in different ways.
 *
 *   launch_bench [-n N] [-w WARMUP] [-s SEED] [-b BASE[,BASE2]] [-q] CASE [:: CASE ...]
 *   launch_bench prepare TREE STAGE PINFILE
 *   launch_bench release PINFILE
 *
 * A CASE is `[LABEL=]MODE ARGS...`; the cases are run round-robin (one launch of each case per
 * round, WARMUP unrecorded rounds first) so that drift on a noisy machine hits all cases alike,
 * in an order shuffled every round (PRNG seeded with SEED, default 1; -s 0 keeps the command-line
 * order): a launch is measurably slower right after a heavier one (+25% for the launch right
 * after a python3 start-up, measured), and a fixed order would bias the ratios.
 * Every launch is timed in the parent from just before fork() to just after waitpid() returns:
 *
 *   bare PATH [ARGV0]          fork -> execv(PATH) -> wait
 *   cmd PROG [ARGS...]         fork -> execvp(PROG, ARGS) -> wait (bwrap, envsched's CLI, ...)
 *   chroot TREE [PROG [ARGS]]  fork -> chroot(TREE), chdir("/") -> execv(PROG) -> wait
 *   join PINFILE [PROG [ARGS]] fork -> open(PINFILE, O_CLOEXEC), setns(CLONE_NEWNS), chdir("/")
 *                              -> execv(PROG) -> wait          (what a per-task C shim does)
 *   join-fd PINFILE [PROG [ARGS]]
 *                              the same, but PINFILE is opened once by the parent before the
 *                              first fork and inherited (a shim opening it in slurmstepd)
 *   enter TREE STAGE [PROG [ARGS]]
 *                              fork -> build a fresh view (see build_view) -> execv(PROG) -> wait
 *
 * PROG defaults to /bin/true (inside the view or chroot: the tree's own /bin/true).  A launch whose
 * child does not exit 0 stops the benchmark (exit 1): a failing launch measures nothing.
 *
 * `prepare` builds the same view as `enter` in a forked child and, from the parent, bind-mounts
 * /proc/CHILD/ns/mnt onto PINFILE (an existing regular file), so the view outlives the child and
 * `join PINFILE` lands in it.  `release` detaches that bind mount, which drops the last reference
 * to the namespace.  Kernel rules met here (6.18): the bind fails with EINVAL if PINFILE is on a
 * shared mount, or if the binding process is in a mount namespace newer than the pinned one (no
 * reference loops); and a pin is not copied into mount namespaces created later (unshare or clone
 * with CLONE_NEWNS skip it: there PINFILE is the plain empty file and setns fails with EINVAL).
 * So pin from the host namespace, and join from processes in that same namespace.
 *
 * Output: a table (median, p10, p90, min, max in microseconds; ratio of medians to each BASE
 * case and the median of the per-round paired difference to it), the median duration of each step
 * of each case, and machine-readable lines
 *   RESULT label n median p10 p90 min max
 *   PAIRED label base median p10 p90      (per-round launch time minus the base's, µs)
 *   STEP label step median p10 p90
 *
 * Build: cc -O2 -Wall -Wextra -o launch_bench launch_bench.c   (Linux, glibc; run as root)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CASES 16
#define MAX_STEPS 20
#define MAX_LABEL 48

static const char *prog = "launch_bench";

/* ---------------------------------------------------------------- timing and step records */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One launch's timestamps, written by the child into memory shared with the parent
 * (MAP_SHARED|MAP_ANONYMOUS, so it survives fork but not exec; the child is done writing by then).
 * t[0] = parent before fork, t[1] = child running, t[2..] = after each step, t[n] = parent after
 * waitpid.  Step k's duration is t[k+1] - t[k]. */
struct record {
    int n;
    int64_t t[MAX_STEPS + 2];
};

static void mark(struct record *r)
{
    if (r && r->n < MAX_STEPS + 1)
        r->t[r->n++] = now_ns();
}

/* ---------------------------------------------------------------- errors */

/* Child-side failure: name the operation and errno, then leave without running atexit handlers
 * or flushing stdio buffers inherited from the parent. */
static void __attribute__((noreturn)) child_fail(const char *op, const char *arg)
{
    int e = errno;
    dprintf(2, "%s: %s(%s): %s (errno %d)\n", prog, op, arg ? arg : "", strerror(e), e);
    _exit(126);
}

static void __attribute__((noreturn)) die(const char *op, const char *arg)
{
    int e = errno;
    fprintf(stderr, "%s: %s(%s): %s (errno %d)\n", prog, op, arg ? arg : "", strerror(e), e);
    exit(1);
}

static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr,
            "usage: %s [-n N] [-w WARMUP] [-s SEED] [-b BASE[,BASE2]] [-q] CASE [:: CASE ...]\n"
            "       CASE = [LABEL=]bare PATH [ARGV0]\n"
            "            | [LABEL=]cmd PROG [ARGS...]\n"
            "            | [LABEL=]chroot TREE [PROG [ARGS...]]\n"
            "            | [LABEL=]join PINFILE [PROG [ARGS...]]\n"
            "            | [LABEL=]join-fd PINFILE [PROG [ARGS...]]\n"
            "            | [LABEL=]enter TREE STAGE [PROG [ARGS...]]\n"
            "       %s prepare TREE STAGE PINFILE\n"
            "       %s release PINFILE\n",
            prog, prog, prog);
    exit(64);
}

/* ---------------------------------------------------------------- the view */

static void path_join(char *out, size_t size, const char *a, const char *b)
{
    if ((size_t)snprintf(out, size, "%s/%s", a, b) >= size) {
        errno = ENAMETOOLONG;
        child_fail("snprintf", a);
    }
}

static void rbind(const char *src, const char *dst, struct record *r)
{
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) {
        char what[8300];
        snprintf(what, sizeof what, "%s -> %s", src, dst);
        child_fail("mount(MS_BIND|MS_REC)", what);
    }
    mark(r);
}

/* Build a CHOS-like view of TREE in a new mount namespace and make it this process's root.
 * Runs in a single-threaded child (unshare(CLONE_NEWNS) and pivot_root need an unshared
 * fs_struct).  On return the caller's root and cwd are the view's "/".  Each step is one
 * timestamp in r (if r is not NULL).  A production view also remounts the tree binds
 * nosuid(,ro), binds the host's passwd/group/hosts, home and the job's cwd: each extra bind costs
 * about one more rbind step below. */
static void build_view(const char *tree, const char *stage, struct record *r)
{
    char src[4096], dst[4096];

    /* 1. A private copy of the mount table for this process only. */
    if (unshare(CLONE_NEWNS) != 0)
        child_fail("unshare", "CLONE_NEWNS");
    mark(r);

    /* 2. Make every mount a slave: host mount events still reach us, ours never reach the host
     *    (and pivot_root refuses shared parents). */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
        child_fail("mount(MS_REC|MS_SLAVE)", "/");
    mark(r);

    /* 3. An empty tmpfs as the new root, on the staging directory (visible only in this ns). */
    if (mount("envsched-view", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
        child_fail("mount(tmpfs)", stage);
    mark(r);

    /* 4. Mount points and the merged-/usr symlinks of the new root. */
    static const char *const dirs[] = {"usr", "etc", "proc", "dev", "tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        path_join(dst, sizeof dst, stage, dirs[i]);
        if (mkdir(dst, 0755) != 0)
            child_fail("mkdir", dst);
    }
    /* lib64 (the dynamic loader's path) only where the tree has it: a debootstrap tree does. */
    static const char *const links[][2] = {{"usr/bin", "bin"}, {"usr/lib", "lib"}, {"usr/sbin", "sbin"},
                                           {"usr/lib64", "lib64"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        path_join(src, sizeof src, tree, links[i][0]);
        if (i == 3 && access(src, F_OK) != 0)
            continue;
        path_join(dst, sizeof dst, stage, links[i][1]);
        if (symlink(links[i][0], dst) != 0)
            child_fail("symlink", dst);
    }
    mark(r);

    /* 5. The tree's /usr. */
    path_join(src, sizeof src, tree, "usr");
    path_join(dst, sizeof dst, stage, "usr");
    rbind(src, dst, r);

    /* 6. The tree's /etc. */
    path_join(src, sizeof src, tree, "etc");
    path_join(dst, sizeof dst, stage, "etc");
    rbind(src, dst, r);

    /* 7. The host's /proc. */
    path_join(dst, sizeof dst, stage, "proc");
    rbind("/proc", dst, r);

    /* 8. The host's /dev (with /dev/pts, /dev/shm). */
    path_join(dst, sizeof dst, stage, "dev");
    rbind("/dev", dst, r);

    /* 9. The host's /tmp. */
    path_join(dst, sizeof dst, stage, "tmp");
    rbind("/tmp", dst, r);

    /* 10. Swap roots: the tmpfs becomes "/", the old root is stacked on top of it
     *     (pivot_root(".", ".") needs no put_old directory; see pivot_root(2)). */
    if (chdir(stage) != 0)
        child_fail("chdir", stage);
    if (syscall(SYS_pivot_root, ".", ".") != 0)
        child_fail("pivot_root", ".");
    mark(r);

    /* 11. Detach the old root (and every host mount under it) from this namespace. */
    if (umount2(".", MNT_DETACH) != 0)
        child_fail("umount2(MNT_DETACH)", "old root");
    mark(r);

    /* 12. Settle cwd on the new root. */
    if (chdir("/") != 0)
        child_fail("chdir", "/");
    mark(r);
}

/* ---------------------------------------------------------------- cases */

enum mode { M_BARE, M_CMD, M_CHROOT, M_JOIN, M_JOIN_FD, M_ENTER };

struct bench_case {
    char label[MAX_LABEL];
    enum mode mode;
    const char *tree, *stage, *pin; /* per mode */
    int pin_fd;                     /* join-fd: opened by the parent */
    const char *path;               /* what is exec'd */
    char **argv;                    /* its argv (NULL-terminated) */
    int nsteps;                     /* child-side steps, including the fork and exec..reaped */
    const char *steps[MAX_STEPS + 1];
    double *total;                  /* N launch times, µs */
    double *step;                   /* N * nsteps step times, µs */
};

static char *default_argv[] = {"true", NULL};

static void set_steps(struct bench_case *c, const char *const *names)
{
    c->nsteps = 0;
    c->steps[c->nsteps++] = "fork";
    for (; *names; names++)
        c->steps[c->nsteps++] = *names;
    c->steps[c->nsteps++] = "exec..reaped";
}

/* Parse one case from args[0..n-1]; PROG [ARGS] after the mode's fixed arguments overrides
 * /bin/true. */
static void parse_case(struct bench_case *c, char **args, int n)
{
    static const char *const none[] = {NULL};
    static const char *const chroot_steps[] = {"chroot", "chdir", NULL};
    static const char *const join_steps[] = {"open", "setns", "chdir", NULL};
    static const char *const join_fd_steps[] = {"setns", "chdir", NULL};
    static const char *const enter_steps[] = {"unshare", "rslave", "tmpfs", "mkdir+symlink",
                                              "bind-usr", "bind-etc", "bind-proc", "bind-dev",
                                              "bind-tmp", "pivot_root", "detach-old", "chdir", NULL};
    const char *word = args[0];
    const char *eq = strchr(word, '=');
    const char *modename = eq ? eq + 1 : word;
    int fixed;

    memset(c, 0, sizeof *c);
    snprintf(c->label, sizeof c->label, "%.*s", eq ? (int)(eq - word) : (int)strlen(word), word);
    if (strcmp(modename, "bare") == 0) {
        if (n < 2 || n > 3)
            usage();
        c->mode = M_BARE;
        c->path = args[1];
        c->argv = calloc(2, sizeof *c->argv);
        if (!c->argv)
            die("calloc", NULL);
        c->argv[0] = n == 3 ? args[2] : args[1];
        set_steps(c, none);
        return;
    }
    if (strcmp(modename, "cmd") == 0) {
        if (n < 2)
            usage();
        c->mode = M_CMD;
        c->path = args[1];
        c->argv = args + 1; /* args[n] was set to NULL by the caller */
        set_steps(c, none);
        return;
    }
    if (strcmp(modename, "chroot") == 0) {
        c->mode = M_CHROOT;
        fixed = 2;
        set_steps(c, chroot_steps);
    } else if (strcmp(modename, "join") == 0) {
        c->mode = M_JOIN;
        fixed = 2;
        set_steps(c, join_steps);
    } else if (strcmp(modename, "join-fd") == 0) {
        c->mode = M_JOIN_FD;
        fixed = 2;
        set_steps(c, join_fd_steps);
    } else if (strcmp(modename, "enter") == 0) {
        c->mode = M_ENTER;
        fixed = 3;
        set_steps(c, enter_steps);
    } else {
        fprintf(stderr, "%s: unknown mode '%s'\n", prog, modename);
        usage();
    }
    if (n < fixed)
        usage();
    if (c->mode == M_JOIN || c->mode == M_JOIN_FD)
        c->pin = args[1];
    else
        c->tree = args[1];
    if (c->mode == M_JOIN_FD) {
        c->pin_fd = open(c->pin, O_RDONLY | O_CLOEXEC);
        if (c->pin_fd < 0)
            die("open", c->pin);
    }
    if (c->mode == M_ENTER)
        c->stage = args[2];
    if (n > fixed) {
        c->path = args[fixed];
        c->argv = args + fixed;
    } else {
        c->path = "/bin/true";
        c->argv = default_argv;
    }
}

/* The forked child: do the case's steps, then exec.  Never returns. */
static void __attribute__((noreturn)) run_child(const struct bench_case *c, struct record *r)
{
    mark(r);
    switch (c->mode) {
    case M_BARE:
    case M_CMD:
        break;
    case M_CHROOT:
        if (chroot(c->tree) != 0)
            child_fail("chroot", c->tree);
        mark(r);
        if (chdir("/") != 0)
            child_fail("chdir", "/");
        mark(r);
        break;
    case M_JOIN:
    case M_JOIN_FD: {
        /* What the per-task shim does in the already-forked task: open the pin, join, chdir.
         * The fd is O_CLOEXEC: exec closes it, no close() needed. */
        int fd = c->pin_fd;
        if (c->mode == M_JOIN) {
            fd = open(c->pin, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                child_fail("open", c->pin);
            mark(r);
        }
        if (setns(fd, CLONE_NEWNS) != 0)
            child_fail("setns(CLONE_NEWNS)", c->pin);
        mark(r);
        /* setns moved root and cwd to the namespace's root; a shim would chdir to the job cwd. */
        if (chdir("/") != 0)
            child_fail("chdir", "/");
        mark(r);
        break;
    }
    case M_ENTER:
        build_view(c->tree, c->stage, r);
        break;
    }
    if (c->mode == M_CMD)
        execvp(c->path, c->argv);
    else
        execv(c->path, c->argv);
    child_fail(c->mode == M_CMD ? "execvp" : "execv", c->path);
}

/* One timed launch of case c; returns µs from before fork to after waitpid, fills r. */
static double launch(const struct bench_case *c, struct record *r)
{
    int status;
    pid_t pid, w;

    r->n = 0;
    mark(r);
    pid = fork();
    if (pid < 0)
        die("fork", c->label);
    if (pid == 0)
        run_child(c, r);
    do
        w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        die("waitpid", c->label);
    r->t[r->n++] = now_ns();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "%s: case %s: child killed by signal %d\n", prog, c->label, WTERMSIG(status));
        else
            fprintf(stderr, "%s: case %s: child exited with status %d\n", prog, c->label, WEXITSTATUS(status));
        exit(1);
    }
    if (r->n != c->nsteps + 1) {
        fprintf(stderr, "%s: case %s: recorded %d timestamps, expected %d\n", prog, c->label, r->n,
                c->nsteps + 1);
        exit(1);
    }
    return (double)(r->t[r->n - 1] - r->t[0]) / 1000.0;
}

/* ---------------------------------------------------------------- statistics */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted v[0..n-1], linear interpolation between closest ranks. */
static double quantile(const double *v, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1)
        return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

struct summary {
    double median, p10, p90, min, max;
};

static struct summary summarize(double *v, int n)
{
    struct summary s;
    qsort(v, n, sizeof *v, cmp_double);
    s.median = quantile(v, n, 0.5);
    s.p10 = quantile(v, n, 0.1);
    s.p90 = quantile(v, n, 0.9);
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

/* ---------------------------------------------------------------- prepare / release */

static int prepare(const char *tree, const char *stage, const char *pin)
{
    int ready[2], go[2];
    struct stat st;
    char ns[64], ok = 0;
    pid_t pid;
    int status;

    if (stat(pin, &st) != 0)
        die("stat", pin);
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "%s: prepare: %s is not a regular file (touch it first)\n", prog, pin);
        return 1;
    }
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0)
        die("pipe2", NULL);
    pid = fork();
    if (pid < 0)
        die("fork", NULL);
    if (pid == 0) {
        /* Child: build the view, report, then wait until the parent has pinned it.  A failure in
         * build_view exits 126, which closes `ready` without a byte. */
        close(ready[0]);
        close(go[1]);
        build_view(tree, stage, NULL);
        if (write(ready[1], "1", 1) != 1)
            child_fail("write", "ready pipe");
        if (read(go[0], &ok, 1) < 0)
            child_fail("read", "go pipe");
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    if (read(ready[0], &ok, 1) != 1) {
        fprintf(stderr, "%s: prepare: the child failed to build the view\n", prog);
        waitpid(pid, &status, 0);
        return 1;
    }
    /* Parent, in the host mount namespace: pin the child's namespace on the file. */
    snprintf(ns, sizeof ns, "/proc/%d/ns/mnt", (int)pid);
    int rc = 0;
    if (mount(ns, pin, NULL, MS_BIND, NULL) != 0) {
        int e = errno;
        fprintf(stderr, "%s: prepare: mount(MS_BIND, %s -> %s): %s (errno %d)%s\n", prog, ns, pin,
                strerror(e), e,
                e == EINVAL ? " [is this process outside the host mount namespace, or is the pin "
                              "file on a shared mount?]"
                            : "");
        rc = 1;
    }
    close(go[1]); /* lets the child exit; the pin (if made) keeps the namespace alive */
    if (waitpid(pid, &status, 0) < 0)
        die("waitpid", NULL);
    if (rc == 0)
        printf("pinned the view of %s on %s\n", tree, pin);
    return rc;
}

static int release(const char *pin)
{
    if (umount2(pin, MNT_DETACH) != 0)
        die("umount2(MNT_DETACH)", pin);
    printf("released %s\n", pin);
    return 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    int n = 500, warmup = 20, quiet = 0, opt;
    unsigned long long seed = 1;
    char *bases = NULL;
    struct bench_case cases[MAX_CASES];
    int ncases = 0;

    while ((opt = getopt(argc, argv, "+n:w:s:b:q")) != -1) {
        switch (opt) {
        case 'n': n = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'b': bases = optarg; break;
        case 'q': quiet = 1; break;
        default: usage();
        }
    }
    if (optind >= argc || n < 1 || warmup < 0)
        usage();
    if (strcmp(argv[optind], "prepare") == 0) {
        if (argc - optind != 4)
            usage();
        return prepare(argv[optind + 1], argv[optind + 2], argv[optind + 3]);
    }
    if (strcmp(argv[optind], "release") == 0) {
        if (argc - optind != 2)
            usage();
        return release(argv[optind + 1]);
    }

    /* Split the remaining words on "::" into cases. */
    for (int i = optind; i < argc;) {
        int j = i;
        while (j < argc && strcmp(argv[j], "::") != 0)
            j++;
        if (j == i)
            usage();
        if (ncases == MAX_CASES) {
            fprintf(stderr, "%s: at most %d cases\n", prog, MAX_CASES);
            return 64;
        }
        if (j < argc)
            argv[j] = NULL; /* terminates this case's argv */
        parse_case(&cases[ncases++], argv + i, j - i);
        i = j + 1;
    }

    for (int k = 0; k < ncases; k++) {
        cases[k].total = malloc(sizeof(double) * n);
        cases[k].step = malloc(sizeof(double) * n * cases[k].nsteps);
        if (!cases[k].total || !cases[k].step)
            die("malloc", NULL);
    }
    struct record *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        die("mmap", NULL);
    fflush(stdout);

    /* Round-robin: warm-up rounds, then n recorded rounds, each in a freshly shuffled order
     * (Fisher-Yates with xorshift64; seed 0 = command-line order). */
    int order[MAX_CASES];
    unsigned long long x = seed;
    for (int k = 0; k < ncases; k++)
        order[k] = k;
    for (int round = -warmup; round < n; round++) {
        for (int k = ncases - 1; seed && k > 0; k--) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int j = (int)(x % (unsigned long long)(k + 1)), t = order[k];
            order[k] = order[j], order[j] = t;
        }
        for (int o = 0; o < ncases; o++) {
            struct bench_case *c = &cases[order[o]];
            double us = launch(c, r);
            if (round < 0)
                continue;
            c->total[round] = us;
            for (int s = 0; s < c->nsteps; s++)
                c->step[s * n + round] = (double)(r->t[s + 1] - r->t[s]) / 1000.0;
        }
    }
    if (quiet)
        return 0;

    /* Summaries: parse the bases, take the paired per-round differences while the launch times
     * are still in round order, then sort. */

    int base_idx[2] = {-1, -1}, nbase = 0;
    if (bases) {
        char *save = NULL;
        for (char *b = strtok_r(bases, ",", &save); b && nbase < 2; b = strtok_r(NULL, ",", &save)) {
            for (int k = 0; k < ncases; k++)
                if (strcmp(cases[k].label, b) == 0)
                    base_idx[nbase] = k;
            if (base_idx[nbase] < 0) {
                fprintf(stderr, "%s: -b %s: no such case label\n", prog, b);
                return 64;
            }
            nbase++;
        }
    }
    struct summary sum[MAX_CASES], paired[MAX_CASES][2];
    double *diff = malloc(sizeof(double) * n);
    if (!diff)
        die("malloc", NULL);
    for (int b = 0; b < nbase; b++)
        for (int k = 0; k < ncases; k++) {
            for (int i = 0; i < n; i++)
                diff[i] = cases[k].total[i] - cases[base_idx[b]].total[i];
            paired[k][b] = summarize(diff, n);
        }
    for (int k = 0; k < ncases; k++)
        sum[k] = summarize(cases[k].total, n);

    printf("# %d recorded rounds (+%d warm-up), cases interleaved (%s); per-launch wall time in\n"
           "# µs, parent clock from before fork() to after waitpid(); x BASE = ratio of medians,\n"
           "# +- BASE = median of the per-round differences to BASE\n",
           n, warmup, seed ? "order shuffled per round" : "fixed order");
    printf("%-14s %8s %8s %8s %8s %8s", "mode", "median", "p10", "p90", "min", "max");
    for (int b = 0; b < nbase; b++) {
        char h1[64], h2[64];
        snprintf(h1, sizeof h1, "x %s", cases[base_idx[b]].label);
        snprintf(h2, sizeof h2, "+- %s", cases[base_idx[b]].label);
        printf("  %11s %12s", h1, h2);
    }
    printf("\n");
    for (int k = 0; k < ncases; k++) {
        printf("%-14s %8.1f %8.1f %8.1f %8.1f %8.1f", cases[k].label, sum[k].median, sum[k].p10,
               sum[k].p90, sum[k].min, sum[k].max);
        for (int b = 0; b < nbase; b++)
            printf("  %11.3f %+12.1f", sum[k].median / sum[base_idx[b]].median, paired[k][b].median);
        printf("\n");
    }
    printf("\n# step medians (µs); 'fork' = parent before fork() to child running,\n"
           "# 'exec..reaped' = child's execv() to parent's waitpid() return (exec, run, exit, wake-up)\n");
    for (int k = 0; k < ncases; k++) {
        printf("%-16s", cases[k].label);
        for (int s = 0; s < cases[k].nsteps; s++) {
            struct summary ss = summarize(cases[k].step + (size_t)s * n, n);
            printf(" %s %.1f%s", cases[k].steps[s], ss.median, s + 1 < cases[k].nsteps ? " |" : "");
        }
        printf("\n");
    }
    printf("\n");
    for (int k = 0; k < ncases; k++) {
        printf("RESULT %s %d %.1f %.1f %.1f %.1f %.1f\n", cases[k].label, n, sum[k].median, sum[k].p10,
               sum[k].p90, sum[k].min, sum[k].max);
        for (int b = 0; b < nbase; b++)
            printf("PAIRED %s %s %.1f %.1f %.1f\n", cases[k].label, cases[base_idx[b]].label,
                   paired[k][b].median, paired[k][b].p10, paired[k][b].p90);
        for (int s = 0; s < cases[k].nsteps; s++) {
            /* already sorted by the loop above */
            const double *v = cases[k].step + (size_t)s * n;
            printf("STEP %s %s %.1f %.1f %.1f\n", cases[k].label, cases[k].steps[s],
                   quantile(v, n, 0.5), quantile(v, n, 0.1), quantile(v, n, 0.9));
        }
    }
    /* say what was exec'd */
    printf("\n");
    for (int k = 0; k < ncases; k++) {
        static const char *const mname[] = {"bare", "cmd", "chroot", "join", "join-fd", "enter"};
        printf("EXEC %s %s:", cases[k].label, mname[cases[k].mode]);
        if (cases[k].mode == M_BARE)
            printf(" %s argv0", cases[k].path);
        for (char **a = cases[k].argv; *a; a++)
            printf(" %s", *a);
        if (cases[k].mode != M_CMD && cases[k].mode != M_BARE)
            printf(" (path %s %s)", cases[k].path,
                   cases[k].mode == M_CHROOT ? "inside the chroot" : "inside the view");
        printf("\n");
    }
    return 0;
}
