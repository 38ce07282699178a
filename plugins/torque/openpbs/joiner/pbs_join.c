/* envsched-pbs-join: the program OpenPBS launches instead of the job's (set-user-ID root).
 *
 * The execjob_launch hook (plugins/torque/openpbs/envsched_launch.py) pins the job's view as
 * root and rewrites the launch to
 *     progname = this program, argv = [this, KEY, PROGNAME, ARGV0, ARGS...]
 * PBS runs it as the job user. It joins the view and execs PROGNAME with [ARGV0, ARGS...].
 * Joining a mount namespace needs CAP_SYS_ADMIN, hence set-user-ID root. The sequence:
 *
 *   1. keep our initial environment (glibc drops LD_*, TMPDIR, ... for set-user-ID programs)
 *   2. read run_dir from <this program>.conf, which with every directory above it must be
 *      root's and not writable by group or others (never from argv or the environment)
 *   3. KEY must be "openpbs-" + name grammar; run_dir, the pin directory and its `shim` file
 *      must be root's and not writable by others, opened O_NOFOLLOW relative to each other,
 *      and the shim's `uid` line must be our real uid: a user can only join a view root
 *      pinned for them (at worst their own job's view again)
 *   4. setns into the pin's `mnt` (moves root and cwd into the view)
 *   5. drop privileges for good (real/effective/saved gid and uid), check uid 0 cannot come
 *      back, no_new_privs
 *   6. put back what glibc removed, chdir back to our cwd (else the shim's home, else /), exec;
 *      with the environment's `launcher` (the shim's `launcher` lines, ../../../common/es_launch.c):
 *      execv(launcher, [launcher args..., PROGNAME, ARGS...]) (ARGV0 is not passed on: the
 *      launcher names the program by its path)
 *
 * Every failure is one line on stderr ("envsched: ...", the job's error file) and an exit code
 * of ../../../common/envsched_exit.h; the program never runs outside the view.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../../common/envsched_exit.h"
#include "../../../common/es_join.h"
#include "../../../common/es_launch.h"
#include "../../../common/es_trust.h"

#define KEY_PREFIX "openpbs-"
#define SHIM_MAX 16384

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("envsched: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

/* path and every directory above it: root's, not writable by group or others */
static void require_trusted(const char *path)
{
    char err[PATH_MAX + 128];
    if (es_trusted_path(path, err, sizeof err) != 0)
        die(ENVSCHED_EXIT_POLICY_INVALID, "joiner configuration: %s", err);
}

static void read_conf(char *run_dir, size_t len)
{
    char exe[PATH_MAX], path[PATH_MAX + 8], line[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (n <= 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "readlink /proc/self/exe: %s", strerror(errno));
    exe[n] = '\0';
    snprintf(path, sizeof path, "%s.conf", exe);
    require_trusted(path);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f == NULL)
        die(ENVSCHED_EXIT_POLICY_INVALID, "joiner configuration: %s: %s", path, strerror(errno));
    run_dir[0] = '\0';
    for (int lineno = 1; fgets(line, sizeof line, f); lineno++) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (strncmp(line, "run_dir=/", 9) == 0 && strlen(line + 8) < len)
            snprintf(run_dir, len, "%s", line + 8);
        else
            die(ENVSCHED_EXIT_POLICY_INVALID, "joiner configuration: %s:%d: expected run_dir=/ABSOLUTE/PATH",
                path, lineno);
    }
    fclose(f);
    if (!run_dir[0])
        die(ENVSCHED_EXIT_POLICY_INVALID, "joiner configuration: %s: run_dir= is required", path);
}

static int valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n > 64 || strncmp(k, KEY_PREFIX, strlen(KEY_PREFIX)) != 0 || n == strlen(KEY_PREFIX))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)k[i]) && k[i] != '.' && k[i] != '_' && k[i] != '-')
            return 0;
    return 1;
}

/* the pin directory (fd); its shim read into shim[] */
static int open_pin(const char *run_dir, const char *key, char *shim)
{
    char why[PATH_MAX + 256];
    int dirfd = es_open_pin_dir(run_dir, key, why, sizeof why);
    if (dirfd < 0 && errno == ENOENT)
        die(ENVSCHED_EXIT_SETUP_FAILED, "the job's environment is not prepared on this host (%s)", why);
    if (dirfd < 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "%s", why);
    ssize_t n = es_read_root_file(dirfd, "shim", shim, SHIM_MAX);
    if (n < 0 && errno != EFBIG)
        die(ENVSCHED_EXIT_SETUP_FAILED, "%s/%s: not a complete pin of root's", run_dir, key);
    if (n <= 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "%s/%s/shim: unreadable or too long", run_dir, key);
    return dirfd;
}

/* the shim's value for `name` ("uid", "home"), or NULL */
static const char *shim_value(const char *shim, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *l = shim; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, nl) == 0 && l[nl] == ' ') {
            size_t vl = strcspn(l + nl + 1, "\n");
            snprintf(buf, len, "%.*s", (int)vl, l + nl + 1);
            return buf;
        }
    return NULL;
}

static char *saved_env;
static size_t saved_len;

static void save_environ(void)
{
    int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    size_t cap = 65536;
    saved_env = malloc(cap);
    while (fd >= 0 && saved_env) {
        ssize_t n = read(fd, saved_env + saved_len, cap - saved_len);
        if (n <= 0)
            break;
        saved_len += (size_t)n;
        if (saved_len == cap)
            saved_env = realloc(saved_env, cap *= 2);
    }
    if (fd >= 0)
        close(fd);
    if (fd < 0 || saved_env == NULL)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot read /proc/self/environ");
}

/* after the drop: what glibc removed (AT_SECURE) comes back; the job could set it itself */
static void restore_environ(void)
{
    for (size_t off = 0; off < saved_len; off += strlen(saved_env + off) + 1) {
        char *entry = saved_env + off, *eq = strchr(entry, '=');
        if (eq == NULL || eq == entry)
            continue;
        *eq = '\0';
        if (getenv(entry) == NULL)
            setenv(entry, eq + 1, 0);
        *eq = '=';
    }
}

int main(int argc, char **argv)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    char run_dir[PATH_MAX], shim[SHIM_MAX], cwd[PATH_MAX], value[PATH_MAX];
    static struct es_launcher launcher;

    if (argc < 4)
        die(ENVSCHED_EXIT_USAGE, "usage: %s KEY PROGRAM ARGV0 [ARGS...] (run by the OpenPBS launch hook)",
            argv[0]);
    if (geteuid() != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "%s is not installed set-user-ID root", argv[0]);
    save_environ();                                               /* 1 */
    read_conf(run_dir, sizeof run_dir);                           /* 2 */
    if (!valid_key(argv[1]))                                      /* 3 */
        die(ENVSCHED_EXIT_USAGE, "not a job key: '%.80s'", argv[1]);
    int dirfd = open_pin(run_dir, argv[1], shim);
    const char *u = shim_value(shim, "uid", value, sizeof value);
    long pin_uid = u ? es_parse_uid(u) : -1;
    if (pin_uid < 0 || (uid_t)pin_uid != uid)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "the job's environment was prepared for uid %ld, not for %u",
            pin_uid, (unsigned)uid);
    if (getcwd(cwd, sizeof cwd) == NULL)
        cwd[0] = '\0';
    char where[PATH_MAX * 2 + 2], err[PATH_MAX * 2 + 200];                /* 4, 5: ../../../common/es_join.c */
    snprintf(where, sizeof where, "%s/%s", run_dir, argv[1]);
    int rc = es_join_and_drop(dirfd, 1, where, uid, gid, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    restore_environ();                                            /* 6 */
    const char *home = shim_value(shim, "home", value, sizeof value);
    if (!((cwd[0] && chdir(cwd) == 0) || (home && chdir(home) == 0) || chdir("/") == 0))
        die(ENVSCHED_EXIT_SETUP_FAILED, "no usable working directory in the environment");
    if (es_launcher_parse(shim, &launcher) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "the job's environment names an unusable launcher");
    if (launcher.argc > 0) {
        char **launch = es_launch_argv(&launcher, argv[2], argv + 4, argc - 4);
        if (launch == NULL)
            die(ENVSCHED_EXIT_INTERNAL, "out of memory");
        execv(launcher.argv[0], launch);
        int e = errno;
        die(es_launch_exit_code(e), "cannot execute the launcher %s: %s", launcher.argv[0], strerror(e));
    }
    execv(argv[2], argv + 3);
    int e = errno;
    die(e == ENOENT ? ENVSCHED_EXIT_NOT_FOUND : ENVSCHED_EXIT_EXEC_FAILED,
        "%s: cannot execute in the job's environment: %s", argv[2], strerror(e));
}
