/* Which job we start and how the shepherd would have started it.
 *
 * Nothing here comes from the environment, the arguments or a path the user chose. The job is
 * the one of the process that started us: our parent must be an sge_shepherd whose real uid is
 * 0 (for qrsh CMD and qrsh -inherit tasks: a qrsh_starter whose parent is such a shepherd). Its
 * working directory is the job's directory in the execd spool,
 * .../active_jobs/<job>.<task>[/<petask>], which names the job, and holds `config`, written by
 * execd (exec_job.c): the queue (`queue=`, the partition for the policy) and how to start the
 * job (`handle_as_binary=`, `no_shell=`) come from there. The shepherd is held by a pidfd and
 * its /proc directory (../../common/es_proc.c), so a parent that exits and whose pid is reused
 * meanwhile is noticed, not read.
 *
 * Grid Engine writes the job's own values (arguments, -M, -o, -wd ...) into `config` without
 * escaping them: a value with a line break adds lines, and the shepherd takes the last line of a
 * key (measured on 8.1.9: `qsub -b y /bin/echo "$(printf 'a\njob_owner=root')"` ran as root).
 * So `config` is read as the shepherd reads it, and a key that appears twice with different
 * values refuses the job.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/es_proc.h"
#include "starter.h"

#define ES_SHEPHERD_LINE 100000     /* the shepherd's read_config: fgets(buf[100000]) */
#define ES_SHEPHERD_ENV_LINE 10000  /* its sge_set_environment: fgets(buf[10000]) */

static int digits(const char *s, size_t n)
{
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* a path read from /proc for a message: the user names their own programs, so control
 * characters become '?' (the message is one line, also in syslog) */
static char *printable(char *s)
{
    for (char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return s;
}

static const char *base(const char *path)
{
    return strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
}

/* root's, or the Grid Engine admin user's (the shepherd's effective uid: execd spools as it),
 * not writable by group or others, and of the wanted type */
static int spool_owned(const struct stat *st, uid_t admin, mode_t type)
{
    return (st->st_uid == 0 || st->st_uid == admin) && !(st->st_mode & (S_IWGRP | S_IWOTH)) &&
           (st->st_mode & S_IFMT) == type;
}

/* one line of config as the shepherd sees it (read_config: strtok(buf, " =") for the name,
 * strtok(NULL, "\n") for the value) */
struct es_kv {
    const char *key, *val;
    size_t klen, vlen;
    int has_val;
};

static int kv_cmp(const void *a, const void *b)
{
    const struct es_kv *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* Split text[0..len) into the shepherd's lines: fgets with a 100000-byte buffer ends a line at
 * a newline or after 99999 bytes (the rest of a longer line is a line of its own). A line of
 * delimiters alone ends the shepherd's reading, and ours. Returns the number of lines. */
static size_t split_config(const char *text, size_t len, struct es_kv *kv)
{
    size_t n = 0, off = 0;

    while (off < len) {
        size_t end = off;
        while (end < len && end - off < ES_SHEPHERD_LINE - 1 && text[end] != '\n')
            end++;
        if (end < len && text[end] == '\n' && end - off < ES_SHEPHERD_LINE - 1)
            end++;                                          /* the newline belongs to the line */
        size_t k = off;
        while (k < end && (text[k] == ' ' || text[k] == '='))
            k++;
        if (k == end)
            break;
        size_t ke = k;
        while (ke < end && text[ke] != ' ' && text[ke] != '=')
            ke++;
        struct es_kv *e = &kv[n++];
        e->key = text + k;
        e->klen = ke - k;
        e->has_val = ke < end;
        if (e->has_val) {
            size_t v = ke + 1;
            while (v < end && text[v] == '\n')
                v++;
            size_t ve = v;
            while (ve < end && text[ve] != '\n')
                ve++;
            e->val = text + v;
            e->vlen = ve - v;
            e->has_val = ve > v;                           /* strtok: no token, no value */
        }
        off = end;
    }
    return n;
}

/* Split execd's `environment` as the shepherd reads it (sge_set_environment: fgets(buf[10000]),
 * lines of at most one byte skipped, strtok(line, "=") the name, strtok(NULL, "\n") the value),
 * as envsched_uge.py's parse_environment does. Returns the number of lines, or (size_t)-1 where
 * this reader stops short of Python's: a line the 10000-byte buffer would cut (the caller then
 * leaves the job to the Python prolog). */
static size_t split_environment(const char *text, size_t len, struct es_kv *kv)
{
    size_t n = 0, off = 0;

    while (off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        if (end - off >= ES_SHEPHERD_ENV_LINE - 1)
            return (size_t)-1;
        size_t k = off, stop = nl ? end - 1 : end;          /* without its newline */
        if (end - off <= 1) {
            off = end;
            continue;
        }
        while (k < stop && text[k] == '=')
            k++;
        if (k == stop) {
            off = end;
            continue;
        }
        size_t ke = k;
        while (ke < stop && text[ke] != '=')
            ke++;
        struct es_kv *e = &kv[n++];
        e->key = text + k;
        e->klen = ke - k;
        e->val = ke < stop ? text + ke + 1 : text + stop;
        e->vlen = ke < stop ? stop - ke - 1 : 0;
        e->has_val = e->vlen > 0;
        off = end;
    }
    return n;
}

/* 1 when two lines name the same key with values that differ (the shepherd takes the last) */
static int twice(struct es_kv *kv, size_t n, size_t *at)
{
    qsort(kv, n, sizeof *kv, kv_cmp);
    for (size_t i = 1; i < n; i++)
        if (kv_cmp(&kv[i - 1], &kv[i]) == 0 &&
            (kv[i - 1].has_val != kv[i].has_val ||
             (kv[i].has_val && (kv[i - 1].vlen != kv[i].vlen || memcmp(kv[i - 1].val, kv[i].val, kv[i].vlen) != 0)))) {
            *at = i;
            return 1;
        }
    return 0;
}

/* the value of a key, copied into buf; -1 if missing or too long */
static int lookup(const struct es_kv *kv, size_t n, const char *key, char *buf, size_t len)
{
    struct es_kv want = {.key = key, .klen = strlen(key)};
    const struct es_kv *e = bsearch(&want, kv, n, sizeof *kv, kv_cmp);
    if (e == NULL || !e->has_val || e->vlen >= len || memchr(e->val, '\0', e->vlen) != NULL)
        return -1;                                  /* a NUL would cut the value short */
    memcpy(buf, e->val, e->vlen);
    buf[e->vlen] = '\0';
    return 0;
}

/* a queue name as one argv element for the resolver: printable, no white space */
static int queue_name_ok(const char *q)
{
    if (q[0] == '\0')
        return 0;
    for (const char *c = q; *c; c++)
        if (!isgraph((unsigned char)*c))
            return 0;
    return 1;
}

/* NAME in the job's directory, read as root: O_NOFOLLOW, the spool's owner, at most ES_CONFIG_MAX
 * bytes; the text (malloc'd, NUL-terminated) and its length, or -1 with the reason */
static int slurp(int dirfd, uid_t admin, const char *name, const char *what, const char *where,
                 char **textp, size_t *lenp, char *err, size_t errlen)
{
    struct stat st;
    int rc = -1;
    char *text = NULL;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, errlen, "the job's %s %s/%s: %s", what, where, name, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !spool_owned(&st, admin, S_IFREG)) {
        snprintf(err, errlen, "the job's %s %s/%s is not a regular file of root's or "
                 "Grid Engine's admin user's, or writable by others", what, where, name);
        goto out;
    }
    if (st.st_size > ES_CONFIG_MAX) {
        snprintf(err, errlen, "the job's %s %s/%s is larger than %d bytes", what, where, name, ES_CONFIG_MAX);
        goto out;
    }
    text = malloc(ES_CONFIG_MAX + 1);
    size_t len = 0;
    ssize_t got = 1;
    while (text != NULL && len <= ES_CONFIG_MAX && (got = read(fd, text + len, ES_CONFIG_MAX + 1 - len)) > 0)
        len += (size_t)got;
    if (text == NULL || got < 0) {
        snprintf(err, errlen, "the job's %s %s/%s: %s", what, where, name, text ? strerror(errno) : "out of memory");
        goto out;
    }
    if (len > ES_CONFIG_MAX) {                   /* it grew after fstat */
        snprintf(err, errlen, "the job's %s %s/%s is larger than %d bytes", what, where, name, ES_CONFIG_MAX);
        goto out;
    }
    text[len] = '\0';
    *textp = text;
    *lenp = len;
    text = NULL;
    rc = 0;
out:
    free(text);
    close(fd);
    return rc;
}

/* config in the job's directory (slurp); each key once (or repeated with the same value) */
static int read_config(int dirfd, uid_t admin, const char *where, struct es_job *j, char *err, size_t errlen)
{
    char value[256];
    int rc = -1;
    char *text = NULL;
    size_t len = 0;
    struct es_kv *kv = NULL;

    if (slurp(dirfd, admin, "config", "configuration", where, &text, &len, err, errlen) != 0)
        return -1;
    size_t lines = len / (ES_SHEPHERD_LINE - 1) + 1;            /* at most one per newline, plus */
    for (const char *nl = text; (nl = memchr(nl, '\n', len - (size_t)(nl - text))) != NULL; nl++)
        lines++;                                                    /* one per 99999-byte piece   */
    kv = calloc(lines, sizeof *kv);
    if (kv == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t n = split_config(text, len, kv);
    size_t i;
    if (twice(kv, n, &i)) {
        char key[65];
        size_t k = 0;
        for (; k < kv[i].klen && k < sizeof key - 1; k++)             /* the user's bytes: one line */
            key[k] = isgraph((unsigned char)kv[i].key[k]) ? kv[i].key[k] : '?';
        key[k] = '\0';
        snprintf(err, errlen, "the job's configuration %s/config sets '%s' twice: a value of the "
                 "job's (an argument, -M, -o, ...) holds a line break, which Grid Engine does not "
                 "escape; submit it without one", where, key);
        goto out;
    }
    /* the job id and task of the directory must be the config's */
    if (lookup(kv, n, "job_id", value, sizeof value) != 0 || strcmp(value, j->id) != 0 ||
        lookup(kv, n, "ja_task_id", value, sizeof value) != 0 ||
        !(strcmp(value, j->task) == 0 || (strcmp(value, "0") == 0 && strcmp(j->task, "1") == 0))) {
        snprintf(err, errlen, "the job's configuration %s/config does not name job %s.%s", where, j->id, j->task);
        goto out;
    }
    if (lookup(kv, n, "queue", j->queue, sizeof j->queue) != 0 || !queue_name_ok(j->queue)) {
        snprintf(err, errlen, "the job's configuration %s/config has no usable queue= line", where);
        goto out;
    }
    if (lookup(kv, n, "job_owner", j->owner, sizeof j->owner) != 0)
        j->owner[0] = '\0';
    if (lookup(kv, n, "handle_as_binary", value, sizeof value) == 0 && strcmp(value, "1") == 0)
        j->kind |= ES_JOB_BINARY;
    if (lookup(kv, n, "no_shell", value, sizeof value) == 0 && strcmp(value, "1") == 0)
        j->kind |= ES_JOB_NO_SHELL;
    rc = 0;
out:
    free(kv);
    free(text);
    return rc;
}

int es_spool_request(const char *text, size_t len, struct es_job *j)
{
    size_t at, n;
    struct es_kv *kv = NULL;
    int rc = 0;

    j->request[0] = j->chos[0] = '\0';
    size_t lines = 1;
    for (const char *nl = text; (nl = memchr(nl, '\n', len - (size_t)(nl - text))) != NULL; nl++)
        lines++;
    kv = calloc(lines, sizeof *kv);
    if (kv == NULL || (n = split_environment(text, len, kv)) == (size_t)-1 || twice(kv, n, &at))
        goto out;
    struct { const char *name; char *dst; size_t cap; } want[] = {
        {"ENVSCHED_REQUEST", j->request, sizeof j->request}, {"CHOS", j->chos, sizeof j->chos}};
    for (size_t w = 0; w < 2; w++) {
        struct es_kv key = {.key = want[w].name, .klen = strlen(want[w].name)};
        const struct es_kv *e = bsearch(&key, kv, n, sizeof *kv, kv_cmp);
        if (e == NULL || !e->has_val)
            continue;
        if (e->vlen >= want[w].cap || memchr(e->val, '\0', e->vlen) != NULL ||
            memmem(e->val, e->vlen, "\\n", 2) != NULL)
            goto out;
        memcpy(want[w].dst, e->val, e->vlen);
        want[w].dst[e->vlen] = '\0';
    }
    rc = 1;
out:
    if (rc != 1)
        j->request[0] = j->chos[0] = '\0';
    free(kv);
    return rc;
}

/* the request from execd's `environment` in the job's directory (slurp, es_spool_request) */
static int read_request(int dirfd, uid_t admin, const char *where, struct es_job *j, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;

    if (slurp(dirfd, admin, "environment", "environment", where, &text, &len, err, errlen) != 0)
        return -1;
    int rc = es_spool_request(text, len, j);
    free(text);
    return rc;
}

static int identify(struct es_job *j, int with_request, char *err, size_t errlen)
{
    struct es_proc parent = {.pidfd = -1, .dirfd = -1}, shep = {.pidfd = -1, .dirfd = -1};
    char exe[PATH_MAX], cwd[PATH_MAX];
    int cwdfd = -1, rc = -1;
    struct stat st;

    memset(j, 0, sizeof *j);
    /* 1. our parent, held by a pidfd and its /proc directory from here on */
    pid_t ppid = getppid();
    if (es_proc_open(&parent, ppid) != 0) {
        snprintf(err, errlen, "not started by Grid Engine (parent %d is gone)", (int)ppid);
        goto out;
    }
    /* 2. interactive jobs (qrsh CMD, qrsh -inherit) run us from the shepherd's qrsh_starter, a
     *    process of the user's: the shepherd is its parent (read through its /proc directory) */
    es_proc_link(&parent, "exe", exe, sizeof exe);
    if (strcmp(base(exe), "qrsh_starter") == 0) {
        j->via_qrsh = 1;
        j->shepherd = (pid_t)es_proc_status(&parent, "PPid:", 0);
        if (es_proc_open(&shep, j->shepherd) != 0 ||
            es_proc_status(&parent, "PPid:", 0) != (long)j->shepherd) {  /* the pidfd is its parent's */
            snprintf(err, errlen, "not started by Grid Engine (the parent of qrsh_starter %d is gone)", (int)ppid);
            goto out;
        }
    } else {
        j->shepherd = ppid;
        shep = parent;
        parent.pidfd = parent.dirfd = -1;
    }
    /* 3. the shepherd: its executable, real uid 0 (its effective uid is Grid Engine's admin user,
     *    who owns the execd spool) */
    es_proc_link(&shep, "exe", exe, sizeof exe);
    long admin = es_proc_status(&shep, "Uid:", 1);
    if (strcmp(base(exe), "sge_shepherd") != 0 || es_proc_status(&shep, "Uid:", 0) != 0 || admin < 0) {
        snprintf(err, errlen, "not started by Grid Engine (parent %d is %s, not a root sge_shepherd)",
                 (int)ppid, exe[0] ? printable(exe) : "unknown");
        goto out;
    }
    /* 4. its working directory, the job's directory: by name (the job id) and as a descriptor
     *    (the files), both through the shepherd's /proc directory */
    es_proc_link(&shep, "cwd", cwd, sizeof cwd);
    printable(cwd);                                  /* root's path; a '?' can only fail below */
    cwdfd = es_proc_cwd_fd(&shep);
    if (cwdfd < 0 || fstat(cwdfd, &st) != 0 || !spool_owned(&st, (uid_t)admin, S_IFDIR)) {
        snprintf(err, errlen, "sge_shepherd %d works in %s, not in a job directory of Grid Engine's",
                 (int)j->shepherd, cwd[0] ? cwd : "an unreadable directory");
        goto out;
    }
    j->spool_dev = st.st_dev;
    j->spool_ino = st.st_ino;
    const char *p = strstr(cwd, "/active_jobs/");
    if (p == NULL) {
        snprintf(err, errlen, "sge_shepherd %d works in %s, not in a job directory", (int)j->shepherd, cwd);
        goto out;
    }
    p += strlen("/active_jobs/");
    size_t len = strcspn(p, "/");
    const char *dot = memchr(p, '.', len);
    if (dot == NULL || !digits(p, (size_t)(dot - p)) || !digits(dot + 1, len - (size_t)(dot - p) - 1)) {
        snprintf(err, errlen, "cannot read the job id from %s", cwd);
        goto out;
    }
    snprintf(j->id, sizeof j->id, "%.*s", (int)(dot - p), p);
    snprintf(j->task, sizeof j->task, "%.*s", (int)(len - (size_t)(dot - p) - 1), dot + 1);
    snprintf(j->key, sizeof j->key, "uge-%s.%s", j->id, j->task);
    /* 5. the job's config from that directory: the queue, binary or script, the same job id */
    if (read_config(cwdfd, (uid_t)admin, cwd, j, err, errlen) != 0)
        goto out;
    /*    (the prolog) and the request in its copy of the job's environment */
    if (with_request && (j->request_read = read_request(cwdfd, (uid_t)admin, cwd, j, err, errlen)) < 0)
        goto out;
    /* 6. everything above was read from processes that are still ours: the shepherd's pidfd is
     *    alive (so its pid was never reused), our parent is still our parent (a dead parent's
     *    children go to a reaper whose pid is another), and qrsh_starter's parent still the
     *    shepherd */
    if (!es_proc_alive(&shep) || getppid() != ppid ||
        (j->via_qrsh && es_proc_status(&parent, "PPid:", 0) != (long)j->shepherd)) {
        snprintf(err, errlen, "not started by Grid Engine (sge_shepherd %d went away while the job was "
                 "identified)", (int)j->shepherd);
        goto out;
    }
    rc = 0;
out:
    if (cwdfd >= 0)
        close(cwdfd);
    es_proc_close(&parent);
    es_proc_close(&shep);
    return rc;
}

int es_job_identify(struct es_job *j, char *err, size_t errlen)
{
    return identify(j, 0, err, errlen);
}

int es_job_identify_with_request(struct es_job *j, char *err, size_t errlen)
{
    return identify(j, 1, err, errlen);
}

/* What the shepherd runs when no starter is configured (measured on SGE 8.1.9):
 *   script job   $SGE_STARTER_SHELL_PATH script args, as a login shell ("-sh") when
 *                SGE_STARTER_USE_LOGIN_SHELL=true; with shell_start_mode unix_behavior the
 *                script runs itself (its #! line);
 *   binary job, qrsh command, qrsh -inherit task
 *                sh -c "cmd args": the words are joined with spaces and the shell
 *                re-splits and expands them ($JOB_ID works);
 *   binary job with no_shell=1 (qsub -shell no, DRMAA)
 *                cmd args exactly as given, cmd looked up in PATH (*path is then relative). */
char **es_job_argv(int argc, char **argv, int kind, const char **path)
{
    int binary = kind & ES_JOB_BINARY;
    const char *shell = getenv("SGE_STARTER_SHELL_PATH");
    const char *mode = getenv("SGE_STARTER_SHELL_START_MODE");
    const char *login = getenv("SGE_STARTER_USE_LOGIN_SHELL");
    char **out = calloc((size_t)argc + 4, sizeof *out);
    int n = 0;

    if (out == NULL || argc < 2)
        return NULL;
    if (shell == NULL || shell[0] != '/')
        shell = "/bin/sh";
    if (binary && (kind & ES_JOB_NO_SHELL)) {
        *path = argv[1];
        for (int i = 1; i < argc; i++)
            out[n++] = argv[i];
        return out;
    }
    if (binary) {
        size_t len = 1;
        for (int i = 1; i < argc; i++)
            len += strlen(argv[i]) + 1;
        char *joined = calloc(len, 1);
        if (joined == NULL)
            return NULL;
        for (int i = 1; i < argc; i++) {
            if (i > 1)
                strcat(joined, " ");
            strcat(joined, argv[i]);
        }
        *path = shell;
        out[n++] = (char *)shell;
        out[n++] = "-c";
        out[n++] = joined;
        return out;
    }
    if (mode != NULL && strcmp(mode, "unix_behavior") == 0) {
        *path = argv[1];
        for (int i = 1; i < argc; i++)
            out[n++] = argv[i];
        return out;
    }
    *path = shell;
    out[n++] = (char *)shell;
    if (login != NULL && strcmp(login, "true") == 0) {
        const char *base = strrchr(shell, '/') + 1;
        char *dash = malloc(strlen(base) + 2);
        if (dash == NULL)
            return NULL;
        sprintf(dash, "-%s", base);
        out[0] = dash;
    }
    for (int i = 1; i < argc; i++)
        out[n++] = argv[i];
    return out;
}
