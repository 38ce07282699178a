/* The decision cache's reader: see es_cache.h, and src/envsched/decisioncache.py for the entry.
 * One comment per step of what root does. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/nsfs.h>
#include <sched.h>

#include <sys/mman.h>

#include "es_cache.h"
#include "es_fault.h"
#include "es_join.h"
#include "es_release.h"

#define HEADER "envsched-decision 1"
#define ENTRY_MAX 65536
#define USER_FILE_MAX 256           /* userfile.py MAX_BYTES */
#define ES_USER_FILE_WAIT_MS 2000   /* ~/.chos: then a miss (the resolver reads it, with its own timeout) */
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

void es_cache_name(const char *text, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    snprintf(out, 17, "%016" PRIx64, h);
}

static int by_gid(const void *a, const void *b)
{
    gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
    return x < y ? -1 : x > y;
}

int es_user_lookup(uid_t uid, struct es_user *u)
{
    struct passwd pw, *found = NULL;
    struct group gr, *gfound = NULL;
    char buf[16384];
    int n = ES_CACHE_MAX_GIDS;
    size_t len = 0;

    memset(u, 0, sizeof *u);
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) != 0 || found == NULL)
        return -1;
    u->uid = pw.pw_uid;
    u->gid = pw.pw_gid;
    if (snprintf(u->name, sizeof u->name, "%s", pw.pw_name) >= (int)sizeof u->name ||
        snprintf(u->home, sizeof u->home, "%s", pw.pw_dir) >= (int)sizeof u->home)
        return -1;
    if (getgrouplist(u->name, u->gid, u->gids, &n) < 0)
        return -1;                                  /* more groups than we hold: the resolver's */
    u->ngids = n;
    qsort(u->gids, (size_t)n, sizeof u->gids[0], by_gid);
    for (int i = 0; i < n; i++) {
        if (i > 0 && u->gids[i] == u->gids[i - 1])
            continue;
        int w;
        if (getgrgid_r(u->gids[i], &gr, buf, sizeof buf, &gfound) == 0 && gfound != NULL)
            w = snprintf(u->groups + len, sizeof u->groups - len, "%s%u:%s", len ? "," : "",
                         (unsigned)u->gids[i], gr.gr_name);
        else                                        /* unknown gids by number, as identity.py */
            w = snprintf(u->groups + len, sizeof u->groups - len, "%s%u:%u", len ? "," : "",
                         (unsigned)u->gids[i], (unsigned)u->gids[i]);
        if (w < 0 || (size_t)w >= sizeof u->groups - len)
            return -1;
        len += (size_t)w;
    }
    return 0;
}

/* ---- the checks, one per kind of entry line ---------------------------------------------- */

static int miss(char *why, size_t whylen, const char *what, const char *detail)
{
    snprintf(why, whylen, "%s%s%.300s", what, detail[0] ? ": " : "", detail);
    return ES_CACHE_MISS;
}

/* "same S|L PATH DEV INO MODE UID GID SIZE MTIME_NS CTIME_NS": all unchanged */
static int same(char **f, int n)
{
    struct stat st;
    char now[512];

    if (n != 11 || (strcmp(f[1], "S") != 0 && strcmp(f[1], "L") != 0))
        return -1;
    if ((f[1][0] == 'S' ? stat(f[2], &st) : lstat(f[2], &st)) != 0)
        return -1;
    snprintf(now, sizeof now, "%ju\t%ju\t%u\t%u\t%u\t%jd\t%jd\t%jd", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
             (unsigned)st.st_mode, (unsigned)st.st_uid, (unsigned)st.st_gid, (intmax_t)st.st_size,
             (intmax_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
             (intmax_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec);
    char was[512];
    snprintf(was, sizeof was, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]);
    return strcmp(now, was) == 0 ? 0 : -1;
}

/* "owner PATH DEV INO MODE UID GID": the same object, owner and mode (lstat) */
static int owner(char **f, int n)
{
    struct stat st;
    char now[256], was[256];

    if (n != 7 || lstat(f[1], &st) != 0)
        return -1;
    snprintf(now, sizeof now, "%ju\t%ju\t%u\t%u\t%u", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
             (unsigned)st.st_mode, (unsigned)st.st_uid, (unsigned)st.st_gid);
    snprintf(was, sizeof was, "%s\t%s\t%s\t%s\t%s", f[2], f[3], f[4], f[5], f[6]);
    return strcmp(now, was) == 0 ? 0 : -1;
}

/* A child that may be stuck: SIGKILL, then reaped within `ms` if it can be. A process blocked on a
 * file system that read the request and never answers (a FUSE daemon stopped mid-request, a hard
 * NFS mount) cannot die until the server answers: it is then left unreaped rather than hang the
 * caller (slurmstepd, sshd's monitor); it ends as a zombie of ours, or init's once we exit. */
static void kill_and_reap(pid_t pid, int ms)
{
    kill(pid, SIGKILL);
    for (int waited = 0;; waited++) {
        pid_t got = waitpid(pid, NULL, WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR) || waited >= ms)
            return;
        struct timespec one = {0, 1000000};
        nanosleep(&one, NULL);
    }
}

/* A child's answer: up to `size` bytes from its pipe within timeout_ms. How many came: `size`, or
 * fewer when it failed, or did not answer in time (*timed_out then 1). */
static size_t read_answer(int fd, void *buf, size_t size, int timeout_ms, int *timed_out)
{
    size_t have = 0;
    struct timespec t0, t1;
    *timed_out = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (have < size) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ready = spent >= timeout_ms ? 0 : poll(&pfd, 1, (int)(timeout_ms - spent));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            *timed_out = ready == 0;
            break;
        }
        ssize_t got = read(fd, (char *)buf + have, size - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    return have;
}

/* The reader's answer through its pipe. */
struct user_file_reply {
    int rc;                                        /* 0 data, 1 absent, -1 anything else */
    int len;
    unsigned char data[USER_FILE_MAX + 1];
};

/* In the reader: the user for good (real, effective and saved ids; the user's groups), then the
 * file, not followed if a link, not waited on if a FIFO (userfile.py _read_as_current). */
static void read_as_user(const char *path, const struct es_user *u, int switch_ids, struct user_file_reply *r)
{
    struct stat st;
    r->rc = -1;
    r->len = 0;
    if (switch_ids && (setgroups((size_t)u->ngids, u->gids) != 0 || setresgid(u->gid, u->gid, u->gid) != 0 ||
        setresuid(u->uid, u->uid, u->uid) != 0))
        _exit(3);
    if (geteuid() == 0 && u->uid != 0)             /* never root's eyes on a user's file */
        _exit(3);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        r->rc = errno == ENOENT || errno == ENOTDIR ? 1 : -1;
        return;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == u->uid && st.st_size <= USER_FILE_MAX) {
        ssize_t got = read(fd, r->data, sizeof r->data);
        if (got >= 0) {
            r->len = (int)got;
            r->rc = 0;
        }
    }
    close(fd);
}

/* ~/.chos as the user reads it (userfile.py read_user_file and parse_user_file), in a child that
 * the caller waits for at most ES_USER_FILE_WAIT_MS: a home directory that never answers (a hung
 * NFS server, a stopped FUSE daemon) is a miss, and the resolver, which reads it again with
 * site.user_file_timeout, says so to the user. 0 and its value (first line, blanks stripped,
 * plain ASCII), 1 absent, -1 anything else (the resolver says why). */
static int read_user_file(const char *path, const struct es_user *u, int switch_ids, char *value, size_t cap)
{
    static struct user_file_reply r;
    int p[2], timed_out;

    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        read_as_user(path, u, switch_ids, &r);
        _exit(write(p[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(p[1]);
    size_t have = read_answer(p[0], &r, sizeof r, ES_USER_FILE_WAIT_MS, &timed_out);
    close(p[0]);
    if (have != sizeof r) {                        /* no answer in time, or a reader that failed */
        kill_and_reap(pid, 100);
        return -1;
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)   /* it answered: it is exiting */
        ;
    if (r.rc != 0)
        return r.rc == 1 ? 1 : -1;
    return r.len < 0 || r.len > USER_FILE_MAX ? -1 : es_user_file_value(r.data, (size_t)r.len, value, cap);
}

int es_user_file_value(const unsigned char *data, size_t got, char *value, size_t cap)
{
    if (got > USER_FILE_MAX)
        return -1;
    size_t end = 0, start = 0;
    while (end < got && data[end] != '\n')
        end++;
    /* Python's strip(b" \t\r"): never a NUL (strchr would find the string's own terminator) */
    while (start < end && data[start] != '\0' && strchr(" \t\r", data[start]))
        start++;
    while (end > start && data[end - 1] != '\0' && strchr(" \t\r", data[end - 1]))
        end--;
    if (end - start >= cap)
        return -1;
    for (size_t i = start; i < end; i++)
        if (data[i] >= 0x80 || data[i] == '\0')
            return -1;
    memcpy(value, data + start, end - start);
    value[end - start] = '\0';
    return 0;
}

/* "userfile PATH -" | "userfile PATH absent" | "userfile PATH value V" */
static int user_file(char **f, int n, const struct es_check *c)
{
    char value[USER_FILE_MAX + 1];

    if (n == 3 && strcmp(f[2], "-") == 0)
        return c->read_user_file ? -1 : 0;
    if (!c->read_user_file || n < 3)
        return -1;
    int got = read_user_file(f[1], c->u, c->switch_ids, value, sizeof value);
    if (n == 3 && strcmp(f[2], "absent") == 0)
        return got == 1 ? 0 : -1;
    return n == 4 && strcmp(f[2], "value") == 0 && got == 0 && strcmp(value, f[3]) == 0 ? 0 : -1;
}

/* ---- the pin --------------------------------------------------------------------------------- */

static int write_new(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int rc = write(fd, text, len) == (ssize_t)len ? 0 : -1;
    return close(fd) == 0 ? rc : -1;
}

/* A JSON string of text (names, keys: printable; anything else escaped). */
static void json_str(char *out, size_t cap, const char *text)
{
    size_t len = 0;
    out[len++] = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p && len + 8 < cap; p++) {
        if (*p == '"' || *p == '\\')
            len += (size_t)snprintf(out + len, cap - len, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", *p);
        else
            out[len++] = (char)*p;
    }
    out[len++] = '"';
    out[len] = '\0';
}

/* What the child has made so far, shared with its parent (es_cache_try): a child that dies with
 * the job's pin half made (killed, a crash) leaves it to the parent to take apart, or the
 * resolver, which runs next, would find a pin "in the making" that nobody finishes. */
struct progress {
    volatile int made_pin;      /* run_dir/key is the child's own (mkdir succeeded) */
    char vid[40];
};
static struct progress *progress;

static void unpin(const struct es_cache_job *job, const char *vid);

/* Bind the shared view `vid` onto run_dir/key/mnt and count the job in (sharedviews.attach without
 * the build: a view that is not pinned, or busy being built or let go, is a miss). */
static int bind_view(const struct es_cache_job *job, const char *vid, char *why, size_t whylen)
{
    char view[PATH_MAX], path[PATH_MAX + 64], pin[PATH_MAX];
    struct statfs sfs;
    int rc = ES_CACHE_MISS;

    /* 1. the view's directory, locked against a release or a build (shared with other joins; a
     *    build or a release waited for at most 2 s) */
    snprintf(view, sizeof view, "%s/.views/%s", job->run_dir, vid);
    int dfd = es_view_lock_join(view, 2000);
    if (dfd < 0)                                    /* none, busy, or let go of meanwhile */
        return miss(why, whylen, "no shared view to join now", vid);
    /* 2. its mnt: a pinned mount namespace (nsfs), not an empty file a dead builder left */
    snprintf(path, sizeof path, "%s/mnt", view);
    int nfd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0 || fstatfs(nfd, &sfs) != 0 || sfs.f_type != NSFS_MAGIC ||
        ioctl(nfd, NS_GET_NSTYPE) != CLONE_NEWNS) {
        if (nfd >= 0)
            close(nfd);
        close(dfd);
        return miss(why, whylen, "shared view not pinned", vid);
    }
    close(nfd);
    /* 3. the job's pin: a new directory (an existing one is the resolver's to sort out) */
    snprintf(pin, sizeof pin, "%s/%s", job->run_dir, job->key);
    if (mkdir(pin, 0700) != 0) {
        close(dfd);
        return miss(why, whylen, "pin exists", job->key);
    }
    if (progress) {
        snprintf(progress->vid, sizeof progress->vid, "%s", vid);
        progress->made_pin = 1;
    }
    /* who makes it (pin.py's `making`): gc takes a half-made pin apart once its maker is gone */
    char making[64];
    snprintf(making, sizeof making, "%d %llu\n", (int)getpid(), es_start_time(getpid()));
    if (write_new(pin, "making", making) != 0) {
        unpin(job, vid);
        close(dfd);
        return miss(why, whylen, "cannot write", "making");
    }
    /* 4. its mnt: a bind of the shared one (the kernel keeps the namespace while either is there) */
    char target[PATH_MAX + 8];
    snprintf(target, sizeof target, "%s/mnt", pin);
    int tfd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (tfd < 0 || close(tfd) != 0 || mount(path, target, NULL, MS_BIND, NULL) != 0) {
        snprintf(why, whylen, "bind %.300s: %s", target, strerror(errno));
        unpin(job, vid);
        close(dfd);
        return ES_CACHE_ERROR;
    }
    es_fault(job->run_dir, "cache-bound");
    /* 5. the job counted in: refs/KEY (its mtime is the view's last use) */
    snprintf(path, sizeof path, "%s/refs/%s", view, job->key);
    int rfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (rfd >= 0) {
        close(rfd);
        rc = ES_CACHE_HIT;
    } else {
        snprintf(why, whylen, "%.300s: %s", path, strerror(errno));
        unpin(job, vid);
        rc = ES_CACHE_ERROR;
    }
    close(dfd);
    return rc;
}

/* Undo what bind_view and write_pin made (a failure after the bind). */
static void unpin(const struct es_cache_job *job, const char *vid)
{
    static const char *const files[] = {"view", "plan.json", "meta.json", "inputs", "shim", "making", NULL};
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s/%s/mnt", job->run_dir, job->key);
    umount2(path, MNT_DETACH);
    unlink(path);
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", job->run_dir, job->key, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/%s", job->run_dir, job->key);
    rmdir(path);
    snprintf(path, sizeof path, "%s/.views/%s/refs/%s", job->run_dir, vid, job->key);
    unlink(path);
}

/* The pin's files as PinStore._create and write_memo make them; `shim` last (complete). */
static int write_pin(const struct es_cache_job *job, const struct es_user *u, const struct es_cache_hit *hit,
                     const char *plan)
{
    char dir[PATH_MAX], text[8192], key[512], env[600], user[600], digest[300];
    struct timespec now;

    snprintf(dir, sizeof dir, "%s/%s", job->run_dir, job->key);
    clock_gettime(CLOCK_REALTIME, &now);
    json_str(key, sizeof key, job->key);
    json_str(env, sizeof env, hit->env);
    json_str(user, sizeof user, u->name);
    json_str(digest, sizeof digest, strcmp(hit->digest, "-") == 0 ? "" : hit->digest);
    unsigned long long start = es_start_time(job->owner);
    char start_text[32] = "null";                  /* gone: a stale pin at once (gc) */
    if (start)
        snprintf(start_text, sizeof start_text, "%llu", start);
    snprintf(text, sizeof text,
             "{\"key\": %s, \"environment\": %s, \"user\": %s, \"uid\": %u, \"owner_pid\": %d, "
             "\"owner_start\": %s, \"created\": %lld.%06ld, \"digest\": %s, \"userns\": false}",
             key, env, user, (unsigned)u->uid, (int)job->owner, start_text, (long long)now.tv_sec,
             now.tv_nsec / 1000, digest);
    char view[64], inputs[4096];
    snprintf(view, sizeof view, "%s\n", hit->view);
    snprintf(inputs, sizeof inputs, "%s\n", job->inputs);
    if (write_new(dir, "view", view) != 0 || write_new(dir, "plan.json", plan) != 0 ||
        write_new(dir, "meta.json", text) != 0 || write_new(dir, "inputs", inputs) != 0)
        return -1;
    es_fault(job->run_dir, "cache-files");
    if (write_new(dir, "shim", hit->shim) != 0)
        return -1;
    char making[PATH_MAX + 16];                     /* complete: meta.json's owner stands for it */
    snprintf(making, sizeof making, "%s/making", dir);
    unlink(making);
    return 0;
}

/* ---- the entry ------------------------------------------------------------------------------- */

static int trusted_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 077) == 0;
}

/* ---- the checks of an entry, shared by the node's cache and the submit-time one ------------- */

int es_entry_check(char *text, const struct es_check *c, char *why, size_t whylen)
{
    struct stat st;
    char *save = NULL;
    int lineno = 0, seen_inputs = 0, seen_user = 0;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[12];
        int n = 0;
        if (lineno++ == 0) {
            if (strcmp(line, c->header) != 0)
                return miss(why, whylen, "entry of another format", "");
            continue;
        }
        if (strncmp(line, "inputs\t", 7) == 0) {
            if (strcmp(line + 7, c->inputs) != 0)       /* whole: the shim's fields hold tabs */
                return miss(why, whylen, "other inputs", "");
            seen_inputs = 1;
            continue;
        }
        if (strcmp(line, "end") == 0)                   /* never without its inputs and its user */
            return seen_inputs && seen_user ? ES_CACHE_HIT : miss(why, whylen, "entry incomplete", "");
        static const char *const kinds[] = {"same\t", "owner\t", "absent\t", "user\t", "groups\t", "userfile\t", NULL};
        int check = 0;
        for (int i = 0; kinds[i] && !check; i++)
            check = strncmp(line, kinds[i], strlen(kinds[i])) == 0;
        if (!check) {                                   /* what the entry says to do: the caller's */
            if (c->other(line, c->arg) != 0)
                return miss(why, whylen, "entry line not known", line);
            continue;
        }
        char *rest = line;
        for (char *p; n < 12 && (p = strsep(&rest, "\t")) != NULL;)
            f[n++] = p;
        if (strcmp(f[0], "same") == 0) {
            if (same(f, n) != 0)
                return miss(why, whylen, "changed", n > 2 ? f[2] : "");
        } else if (strcmp(f[0], "owner") == 0) {
            if (owner(f, n) != 0)
                return miss(why, whylen, "changed", n > 1 ? f[1] : "");
        } else if (strcmp(f[0], "absent") == 0) {
            if (n != 2 || lstat(f[1], &st) == 0 || errno != ENOENT)
                return miss(why, whylen, "appeared", n > 1 ? f[1] : "");
        } else if (strcmp(f[0], "user") == 0) {
            char uid[16], gid[16];
            snprintf(uid, sizeof uid, "%u", (unsigned)c->u->uid);
            snprintf(gid, sizeof gid, "%u", (unsigned)c->u->gid);
            if (n != 5 || strcmp(f[1], uid) || strcmp(f[2], gid) || strcmp(f[3], c->u->name) ||
                strcmp(f[4], c->u->home))
                return miss(why, whylen, "user changed", c->u->name);
            seen_user = 1;
        } else if (strcmp(f[0], "groups") == 0) {
            if (n != 2 || strcmp(f[1], c->u->groups) != 0)
                return miss(why, whylen, "groups changed", c->u->name);
        } else if (user_file(f, n, c) != 0) {
            return miss(why, whylen, "user file changed", n > 1 ? f[1] : "");
        }
    }
    return miss(why, whylen, "entry incomplete", "");
}

/* An entry file: a regular file of `owner`'s alone, whole (written by rename); its length or -1. */
ssize_t es_entry_read(const char *path, uid_t owner, char *text, size_t cap)
{
    struct stat st;
    ssize_t len = -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == owner && (st.st_mode & 077) == 0 &&
        st.st_nlink == 1 && st.st_size < (off_t)cap)
        len = read(fd, text, cap - 1);
    close(fd);
    if (len >= 0)
        text[len] = '\0';
    return len;
}

/* The node's lines after the checks: what to apply (decisioncache.py). */
struct node_lines {
    struct es_cache_hit *hit;
    char tail[sizeof ((struct es_cache_hit *)0)->shim];
    size_t tail_len;
    const char *plan;
};

static int node_line(char *line, void *arg)
{
    struct node_lines *nl = arg;
    if (strncmp(line, "shim\t", 5) == 0) {            /* whole: its own fields hold tabs */
        int w = snprintf(nl->tail + nl->tail_len, sizeof nl->tail - nl->tail_len, "%s\n", line + 5);
        if (w < 0 || (size_t)w >= sizeof nl->tail - nl->tail_len)
            return -1;
        nl->tail_len += (size_t)w;
        return 0;
    }
    if (strncmp(line, "plan\t", 5) == 0) {
        nl->plan = line + 5;
        return 0;
    }
    char *f[6], *rest = line;
    int n = 0;
    for (char *p; n < 6 && (p = strsep(&rest, "\t")) != NULL;)
        f[n++] = p;
    if (strcmp(f[0], "view") == 0 && n == 2)
        snprintf(nl->hit->view, sizeof nl->hit->view, "%s", f[1]);
    else if (strcmp(f[0], "env") == 0 && n == 4) {
        snprintf(nl->hit->env, sizeof nl->hit->env, "%s", f[1]);
        snprintf(nl->hit->source, sizeof nl->hit->source, "%s", f[2]);
        snprintf(nl->hit->digest, sizeof nl->hit->digest, "%s", f[3]);
    } else
        return -1;
    return 0;
}

/* The whole check and apply, as root; see es_cache.h. */
static int apply(const struct es_cache_job *job, const struct es_user *u, struct es_cache_hit *hit,
                 char *why, size_t whylen)
{
    static char text[ENTRY_MAX + 1];
    static struct node_lines nl;
    char path[PATH_MAX], name[17];

    memset(hit, 0, sizeof *hit);
    memset(&nl, 0, sizeof nl);
    nl.hit = hit;
    /* 1. the entry: root's alone, in root's directory, whole (written by rename) */
    snprintf(path, sizeof path, "%s/.decisions", job->run_dir);
    if (!trusted_dir(path))
        return miss(why, whylen, "no cache directory", "");
    es_cache_name(job->inputs, name);
    snprintf(path, sizeof path, "%s/.decisions/%s", job->run_dir, name);
    if (es_entry_read(path, 0, text, sizeof text) <= 0)
        return miss(why, whylen, "no usable entry", "");
    /* 2. every line checked in order; the first that differs is the miss */
    struct es_check c = {HEADER, job->inputs, u, !job->read_user_file ? 0 : 1, 1, node_line, &nl};
    int rc = es_entry_check(text, &c, why, whylen);
    if (rc != ES_CACHE_HIT)
        return rc;
    if (!hit->view[0] || !hit->env[0] || nl.plan == NULL || !nl.tail[0])
        return miss(why, whylen, "entry incomplete", "");
    const char *plan = nl.plan, *tail = nl.tail;

    /* 3. the view bound onto the job's own pin (none for the host OS), the shim's lines for it */
    int local = strcmp(hit->view, "-") == 0;
    if (!local) {
        if (!es_is_view_id(hit->view))
            return miss(why, whylen, "entry malformed", "view");
        int rc = bind_view(job, hit->view, why, whylen);
        if (rc != ES_CACHE_HIT)
            return rc;
    }
    char pin[PATH_MAX + 8];
    snprintf(pin, sizeof pin, "%s/%s/mnt", job->run_dir, job->key);
    int w = snprintf(hit->shim, sizeof hit->shim, "environment %s\nkey %s\npin %s\nreused 0\n%s", hit->env,
                     local ? "-" : job->key, local ? "-" : pin, tail);
    if (w < 0 || (size_t)w >= sizeof hit->shim || (!local && write_pin(job, u, hit, plan) != 0)) {
        if (!local)
            unpin(job, hit->view);
        snprintf(why, whylen, "cannot write the pin %s: %s", job->key, strerror(errno));
        return ES_CACHE_ERROR;
    }
    return ES_CACHE_HIT;
}

/* The admin log's line for a hit, in the resolver's format (audit.py), with by=cache. */
static void log_hit(const struct es_cache_job *job, const struct es_user *u, const struct es_cache_hit *hit)
{
    char line[2048];
    snprintf(line, sizeof line, "event=decided job=%s user=%s env=%s source=\"%s\" digest=%s key=%s scheduler=%s "
             "by=cache", job->job, u->name, hit->env, hit->source, hit->digest,
             strcmp(hit->view, "-") == 0 ? "-" : job->key, job->scheduler);
    es_admin_log(job->log_file, line);
}

struct reply {
    int rc;
    char why[512];
    struct es_cache_hit hit;
};

int es_cache_try(const struct es_cache_job *job, const struct es_user *u, int timeout_ms,
                 struct es_cache_hit *hit, char *why, size_t whylen)
{
    static struct reply r;
    int p[2], status = 0;

    if (progress == NULL) {
        void *m = mmap(NULL, sizeof *progress, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return miss(why, whylen, "mmap", strerror(errno));
        progress = m;
    }
    memset((void *)progress, 0, sizeof *progress);
    if (pipe2(p, O_CLOEXEC) != 0)
        return miss(why, whylen, "pipe", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return miss(why, whylen, "fork", strerror(errno));
    }
    if (pid == 0) {
        /* the child: root (real, effective, saved; no groups), then the whole check and apply */
        close(p[0]);
        if (setresuid(0, 0, 0) != 0 || setresgid(0, 0, 0) != 0 || setgroups(0, NULL) != 0)
            _exit(1);
        memset(&r, 0, sizeof r);
        r.rc = apply(job, u, &r.hit, r.why, sizeof r.why);
        if (r.rc == ES_CACHE_HIT)
            log_hit(job, u, &r.hit);
        const char *b = (const char *)&r;
        size_t left = sizeof r;
        while (left > 0) {
            ssize_t got = write(p[1], b, left);
            if (got <= 0)
                _exit(1);
            b += got;
            left -= (size_t)got;
        }
        _exit(0);
    }
    close(p[1]);
    int rc = ES_CACHE_MISS, timed_out;
    size_t have = read_answer(p[0], &r, sizeof r, timeout_ms, &timed_out);
    close(p[0]);
    if (timed_out)          /* a hung home directory: the resolver reads it again, with its own timeout */
        snprintf(why, whylen, "no answer within %d ms (a hung home directory?)", timeout_ms);
    else
        snprintf(why, whylen, "no answer");
    if (have == sizeof r) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)   /* it answered: it is exiting */
            ;
    } else {
        kill_and_reap(pid, 1000);                 /* never a slurmstepd stuck on its child */
        status = -1;
    }
    if (have == sizeof r && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rc = r.rc;
        snprintf(why, whylen, "%s", r.why);
        if (rc == ES_CACHE_HIT)
            *hit = r.hit;
    } else if (progress->made_pin) {
        /* the child died (or was killed) with the job's pin half made: taken apart here, so that
         * the resolver, which decides next, makes it afresh */
        char vid[sizeof progress->vid];
        snprintf(vid, sizeof vid, "%s", progress->vid);
        unpin(job, vid);
        snprintf(why + strlen(why), whylen - strlen(why), "; its half-made pin %s taken apart", job->key);
    }
    return rc;
}
