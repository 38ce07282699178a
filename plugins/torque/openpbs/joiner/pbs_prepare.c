/* envsched-pbs-prepare (installed as pbs-prepare, root's, mode 0755, not set-user-ID): the OpenPBS
 * hooks' way to a job's pin without Python for a warm job.
 *
 *   pbs-prepare launch JOBID EUSER QUEUE ACCOUNT REQUEST CHOS      (execjob_launch hook)
 *   pbs-prepare end JOBID                                          (execjob_end hook)
 *   pbs-prepare submit USER OPTION CHOS                            (queuejob hook, pbs_server)
 *
 * The hooks (../envsched_launch.py, ../envsched_end.py) run in PBS's pbs_python as root and import
 * nothing of envsched: they run this program with the values the hook got from the server's job
 * object (job id, euser, queue, Account_Name, Resource_List["chos"]) and the job's CHOS by the
 * hook's rule (e.env, else Variable_List): never from this program's own environment, which is
 * not read at all. Empty arguments mean "none". C decides nothing here: the request goes to the
 * resolver as data, and the decision cache only replays a decision the resolver wrote for exactly
 * the same inputs (../../../common/es_prepare.c, the sequence torque-pelog and the Grid Engine
 * prolog use).
 *
 * Settings: <this program>.conf beside it (pbs-prepare.conf: policy=, resolver=, run_dir=,
 * log_file=, bind=..., cache=0|1; `envsched site-config render --scheduler openpbs`, section
 * prepare_conf), which with every directory above it must be root's and not writable by group or
 * others (../../../uge/starter/conf.c, the Grid Engine and Torque starters' reader).
 *
 * launch: once per job per host (a later launch of the job, a TM task, finds the pin complete and
 * reuses it without deciding again)
 *   1. the pin key openpbs-<jobid> (every byte outside A-Z a-z 0-9 . _ - becomes _, at most 64)
 *   2. the job's user through NSS (a name, or a uid in digits)
 *   3. the pin's owner: the pbs_mom above the hook (root's), else the hook's parent: the pin lives
 *      as long as it does (`envsched gc`), and the end hook releases it
 *   4. a complete pin of the job for this uid: reused (its `shim`)
 *   5. else es_prepare_pin: the decision cache (inputs: uid, request, chos, queue, account, the
 *      configuration's id, scheduler=openpbs), else `envsched prepare --shared-view
 *      --decision-cache`; a pin another launch of the job is preparing right now is waited for
 *   On success: exit 0 and the resolver's protocol lines on stdout (src/envsched/shim.py: key,
 *   pin, env ops, launcher, home ...): the hook sets the joiner and applies the env lines. On a
 *   refusal or failure: envsched's exit code (77 refused, 69 broken tree, 71 setup, ...) and the
 *   one line ("envsched: ...", the resolver's on a miss) on stderr.
 *
 * submit: the queuejob hook's earlier answer for the same inputs (the submitting user, the chos
 *   resource, the job's CHOS, the policy), from root's own cache run_dir/.submit (written by the
 *   hook after the resolver decided in-process, src/envsched/submitcache.py's format; root's, 0700,
 *   every directory above it root's and not writable by group or others): every input it read
 *   unchanged (../../../common/es_submit.c: the policy, the user and groups, the stamps and tree of
 *   the version it pinned; never ~/.chos, which the hook does not read). Nothing of the user's is
 *   read: no home directory, no file the user can write. A hit: exit 0 and the answer's lines on
 *   stdout (`exit N`, `out LINE`, `err LINE`), which the hook applies as it would the resolver's;
 *   anything else: exit 3 (a miss: the hook decides in Python, as without the cache), the reason
 *   on stderr.
 *
 * end: the job's pin released in C (../../../common/es_release.c); one with node hooks, isolation
 * namespaces or image mounts, or one C could not release, by `envsched release --key K --quiet`.
 * Exit 0, or 1 with one line on stderr (the hook logs it; `envsched gc` collects what is left).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "starter.h"            /* ../../../uge/starter: es_conf, es_conf_load, es_conf_prepare */
#include "../../../common/es_release.h"
#include "../../../common/es_submit.h"
#include "../../../common/es_trust.h"

#define KEY_PREFIX "openpbs-"
#define KEY_MAX 64
#define WAIT_FOR_PIN_MS 60000       /* another task of the job may be building the view right now */
#define JOBID_MAX 255

static int fail(int code, const char *line)
{
    fprintf(stderr, "%s\n", line);
    return code;
}

/* a job id as PBS gives it: printable ASCII, no blank, no quote, backslash or '=' (it goes into
 * the admin log's job= and into the key) */
static int valid_jobid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > JOBID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (ch < 0x21 || ch > 0x7e || strchr("\"'\\=", ch))
            return 0;
    }
    return 1;
}

/* openpbs-<jobid>, in the pin name grammar (array subjobs: 12[3].srv -> openpbs-12_3_.srv) */
static void pin_key(const char *jobid, char key[KEY_MAX + 1])
{
    size_t n = strlen(KEY_PREFIX);
    memcpy(key, KEY_PREFIX, n);
    for (const char *s = jobid; *s && n < KEY_MAX; s++)
        key[n++] = isalnum((unsigned char)*s) || strchr("._-", *s) ? *s : '_';
    key[n] = '\0';
}

/* /proc/PID/stat's parent, or -1 */
static pid_t parent_of(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *end = strrchr(text, ')');
    int ppid;
    if (end == NULL || sscanf(end + 1, " %*c %d", &ppid) != 1)
        return -1;
    return (pid_t)ppid;
}

/* the pbs_mom (root's) above the hook that runs us, else the hook's parent */
static pid_t mom_pid(void)
{
    pid_t hook = getppid(), first = parent_of(hook), pid = first;
    for (int i = 0; i < 4 && pid > 1; i++) {
        char path[64], exe[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        snprintf(path, sizeof path, "/proc/%d", (int)pid);
        if (n <= 0 || stat(path, &st) != 0)
            break;
        exe[n] = '\0';
        const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
        if (strcmp(base, "pbs_mom") == 0 && st.st_uid == 0)
            return pid;
        pid = parent_of(pid);
    }
    return first > 0 ? first : hook;
}

/* 1: run_dir/key is a complete pin (its shim, written last, read into shim) for uid; 0: not there
 * or not complete yet; -1: not root's alone, or another user's (the line in err) */
static int complete_pin(const struct es_conf *c, const char *key, uid_t uid, char *shim, size_t cap,
                        char *err, size_t errlen)
{
    char why[PATH_MAX + 256];
    int dirfd = es_open_pin_dir(c->run_dir, key, why, sizeof why);
    if (dirfd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, ES_PREFIX "%.1500s", why);
        return -1;
    }
    ssize_t n = es_read_root_file(dirfd, "shim", shim, cap);
    int e = errno;
    close(dirfd);
    if (n < 0 && e == ENOENT)
        return 0;                               /* being prepared: shim is written last */
    if (n < 0 && e != EFBIG) {
        snprintf(err, errlen, ES_PREFIX "%.1500s/%s: not a complete pin of root's", c->run_dir, key);
        return -1;
    }
    if (n <= 0) {
        snprintf(err, errlen, ES_PREFIX "%.1500s/%s/shim: unreadable or too long", c->run_dir, key);
        return -1;
    }
    long pin_uid = -1;
    for (const char *l = shim; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, "uid ", 4) == 0) {
            char value[32];
            snprintf(value, sizeof value, "%.*s", (int)strcspn(l + 4, "\n"), l + 4);
            pin_uid = es_parse_uid(value);
        }
    if (pin_uid < 0 || (uid_t)pin_uid != uid) {
        snprintf(err, errlen, ES_PREFIX "the job's environment was prepared for uid %ld, not for %u", pin_uid,
                 (unsigned)uid);
        return -1;
    }
    return 1;
}

static int print_shim(const char *shim)
{
    size_t n = strlen(shim);
    fputs(shim, stdout);
    if (n == 0 || shim[n - 1] != '\n')
        fputc('\n', stdout);
    return fflush(stdout) == 0 ? 0 : ENVSCHED_EXIT_SETUP_FAILED;
}

static int launch(const struct es_conf *c, char **a)
{
    const char *jobid = a[0], *euser = a[1], *queue = a[2], *account = a[3], *request = a[4], *chos = a[5];
    static char shim[ES_SHIM_MAX];
    char key[KEY_MAX + 1], err[2048], inputs[2048], line[PATH_MAX + 600];
    struct es_prepare p;
    int by_cache = 0;

    /* 1 */
    if (!valid_jobid(jobid)) {
        snprintf(line, sizeof line, ES_PREFIX "not a PBS job id: '%.80s'", jobid);
        return fail(ENVSCHED_EXIT_USAGE, line);
    }
    pin_key(jobid, key);
    /* 2 */
    struct passwd *pw = getpwnam(euser);
    if (pw == NULL && euser[0] && strspn(euser, "0123456789") == strlen(euser) && es_parse_uid(euser) >= 0)
        pw = getpwuid((uid_t)es_parse_uid(euser));
    if (pw == NULL) {
        snprintf(line, sizeof line, ES_PREFIX "no such user: %.200s", euser);
        return fail(ENVSCHED_EXIT_NO_USER, line);
    }
    uid_t uid = pw->pw_uid;
    /* 3 */
    pid_t owner = mom_pid();
    /* 4 */
    int rc = complete_pin(c, key, uid, shim, sizeof shim, err, sizeof err);
    if (rc != 0)
        return rc > 0 ? print_shim(shim) : fail(ENVSCHED_EXIT_NOT_PERMITTED, err);
    /* 5 */
    es_conf_prepare(c, &p);
    p.scheduler = "openpbs";
    p.key = key;
    p.job = jobid;
    p.uid = uid;
    p.owner = owner;
    p.partition = queue;
    p.account = account;
    p.request = request;
    p.chos = chos;
    p.extra_inputs = "\tscheduler=openpbs";
    /* a value with a tab or a line break cannot be one field of the inputs line: no cache for it,
     * the resolver judges the value as it is */
    p.inputs = es_prepare_inputs(&p, inputs, sizeof inputs) == 0 ? inputs : NULL;
    rc = es_prepare_pin(&p, shim, sizeof shim, &by_cache, err, sizeof err);
    if (!by_cache)
        syslog(LOG_INFO, "job %s: decision cache: %s", jobid, p.miss);
    if (rc == 0)
        return print_shim(shim);
    if (!(rc == ENVSCHED_EXIT_USAGE && strstr(err, "exists already") != NULL))
        return fail(rc, err);
    /* another launch of this job is preparing the pin right now: its shim, once written */
    struct timespec start, now, pause = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        rc = complete_pin(c, key, uid, shim, sizeof shim, err, sizeof err);
        if (rc != 0)
            return rc > 0 ? print_shim(shim) : fail(ENVSCHED_EXIT_NOT_PERMITTED, err);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > WAIT_FOR_PIN_MS) {
            snprintf(line, sizeof line, ES_PREFIX "the job's environment was not ready after %d s (%.2000s/%s)",
                     WAIT_FOR_PIN_MS / 1000, c->run_dir, key);
            return fail(ENVSCHED_EXIT_SETUP_FAILED, line);
        }
        nanosleep(&pause, NULL);
    }
}

static int end(const struct es_conf *c, const char *jobid)
{
    char key[KEY_MAX + 1], why[1024], line[2300];

    if (!valid_jobid(jobid)) {
        snprintf(line, sizeof line, ES_PREFIX "not a PBS job id: '%.80s'", jobid);
        return fail(1, line);
    }
    pin_key(jobid, key);
    why[0] = '\0';
    char fields[128];
    snprintf(fields, sizeof fields, " job=%.100s", jobid);
    int rc = es_release_logged(c->run_dir, key, c->log_file, fields, why, sizeof why);
    if (rc == ES_RELEASED || rc == ES_RELEASE_NONE)
        return 0;
    /* node hooks, isolation namespaces, image mounts, or a failure: the resolver's release */
    syslog(LOG_INFO, "job %s: %s to the resolver: %s", jobid, key, rc == ES_RELEASE_FAILED ? why : "its kind");
    static struct es_run r;
    char *argv[] = {(char *)c->resolver, "--policy", (char *)c->policy, "release", "--key", key, "--quiet", NULL};
    if (es_run(argv, 1, &r) != 0 || r.status != 0) {
        es_user_line(&r, line, sizeof line);
        return fail(1, line);
    }
    return 0;
}

#define SUBMIT_DIR ".submit"
#define SUBMIT_MISS 3

/* submit: see the top; never the resolver, never a file of the user's */
static int submit(const struct es_conf *c, char **a)
{
    static struct es_user u;
    static struct es_run ans;
    const char *user = a[0], *option = a[1], *chos = a[2];
    char dir[PATH_MAX + 16], path[PATH_MAX + 48], inputs[PATH_MAX + 2048], name[17], why[PATH_MAX + 256];
    struct passwd *pw;

    if (!c->cache)
        return fail(SUBMIT_MISS, ES_PREFIX "miss: cache=0");
    long uid = es_parse_uid(user);
    if (user[0] == '\0' || (pw = uid >= 0 ? getpwuid((uid_t)uid) : getpwnam(user)) == NULL ||
        es_user_lookup(pw->pw_uid, &u) != 0)
        return fail(SUBMIT_MISS, ES_PREFIX "miss: the user is not known here");
    if ((size_t)snprintf(inputs, sizeof inputs, "uid=%u\toption=%s\tchos=%s\tpolicy=%s\tscheduler=openpbs",
                         (unsigned)u.uid, option, chos, c->policy) >= sizeof inputs ||
        strpbrk(option, "\t\n\r") || strpbrk(chos, "\t\n\r"))
        return fail(SUBMIT_MISS, ES_PREFIX "miss: a value that cannot be one field");
    snprintf(dir, sizeof dir, "%s/" SUBMIT_DIR, c->run_dir);
    if (es_trusted_path(dir, why, sizeof why) != 0) {
        fprintf(stderr, ES_PREFIX "miss: %s\n", why);
        return SUBMIT_MISS;
    }
    es_cache_name(inputs, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct es_submit_lookup l = {.path = path, .owner = 0, .inputs = inputs, .u = &u, .read_user_file = 0,
                                 .switch_ids = 0};
    if (es_submit_cached(&l, &ans, why, sizeof why) != ES_CACHE_HIT) {
        fprintf(stderr, ES_PREFIX "miss: %s\n", why);
        return SUBMIT_MISS;
    }
    printf("exit\t%d\n", ans.status);
    for (const char *p = ans.out; *p; p += strcspn(p, "\n") + 1)
        printf("out\t%.*s\n", (int)strcspn(p, "\n"), p);
    for (const char *p = ans.err; *p; p += strcspn(p, "\n") + 1)
        printf("err\t%.*s\n", (int)strcspn(p, "\n"), p);
    return fflush(stdout) == 0 ? 0 : SUBMIT_MISS;
}

int main(int argc, char **argv)
{
    struct es_conf c;
    char err[PATH_MAX + 512], line[PATH_MAX + 600];

    /* nothing of the hook's process (pbs_python in the mom) beyond stdin, stdout and stderr */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)      /* Linux >= 5.9; else the usual range */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    openlog("envsched-pbs-prepare", LOG_PID, LOG_DAEMON);
    int is_launch = argc == 8 && strcmp(argv[1], "launch") == 0;
    int is_end = argc == 3 && strcmp(argv[1], "end") == 0;
    int is_submit = argc == 5 && strcmp(argv[1], "submit") == 0;
    if (!is_launch && !is_end && !is_submit)
        return fail(ENVSCHED_EXIT_USAGE, ES_PREFIX "usage: pbs-prepare launch JOBID EUSER QUEUE ACCOUNT REQUEST CHOS"
                    " | end JOBID | submit USER OPTION CHOS (run by the OpenPBS hooks, as root)");
    if (getuid() != 0 || geteuid() != 0)
        return fail(ENVSCHED_EXIT_NOT_PERMITTED, ES_PREFIX "pbs-prepare runs as root (from the OpenPBS hooks)");
    if (chdir("/") != 0)                        /* the resolver's working directory: nobody's */
        return fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "chdir /: failed");
    if (es_conf_load(&c, NULL, err, sizeof err) != 0) {
        snprintf(line, sizeof line, ES_PREFIX "%s", err);
        return fail(is_launch ? ENVSCHED_EXIT_POLICY_INVALID : is_submit ? SUBMIT_MISS : 1, line);
    }
    if (is_submit)
        return submit(&c, argv + 2);
    return is_launch ? launch(&c, argv + 2) : end(&c, argv[2]);
}
