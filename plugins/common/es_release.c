/* Release a job's pin without Python: see es_release.h. One comment per step. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "es_release.h"

/* a pin with one of these is released by the resolver */
static const char *const resolver_files[] = {"hooks.json", "init", "ipc", "uts", NULL};
/* what a pin holds besides its mnt (PinStore.release removes the same) */
static const char *const pin_files[] = {"plan.json", "meta.json", "shim", "inputs", "userns", "hooks.json",
                                        "hooks.released", "view", "making", NULL};

/* ---- shared views (src/envsched/sharedviews.py: the layout, and the same steps in Python) ---- */

int es_is_view_id(const char *name)
{
    return strlen(name) == 32 && strspn(name, "0123456789abcdef") == 32;
}

/* The locked descriptor fd of `dir`, if it is still the directory at `dir` (whoever held the lock
 * may have let go of it meanwhile); else closed, -1. */
static int still_there(int fd, const char *dir)
{
    struct stat held, here;

    if (fstat(fd, &held) != 0 || lstat(dir, &here) != 0 || held.st_dev != here.st_dev ||
        held.st_ino != here.st_ino) {
        close(fd);
        return -1;
    }
    return fd;
}

int es_view_lock(const char *dir, int wait)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
        close(fd);
        return -1;
    }
    return still_there(fd, dir);
}

int es_view_lock_join(const char *dir, int timeout_ms)
{
    struct timespec pause = {0, 1000 * 1000};
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return -1;
    /* shared: joins run side by side; a build or a let-go (exclusive) is waited for, at most
     * timeout_ms (then the caller's miss: the resolver, which waits for it in full) */
    for (int waited = 0; flock(fd, LOCK_SH | LOCK_NB) != 0; waited++) {
        if (errno != EWOULDBLOCK || waited >= timeout_ms) {
            close(fd);
            return -1;
        }
        nanosleep(&pause, NULL);
    }
    return still_there(fd, dir);
}

/* Let go of the view in `dir` (locked by the caller): unpin it, remove its files (_let_go). */
static void let_go(const char *dir)
{
    static const char *const files[] = {"mnt", "plan.json", "meta.json", "hold", NULL};
    char path[PATH_MAX + 300];

    snprintf(path, sizeof path, "%s/mnt", dir);
    umount2(path, MNT_DETACH);                  /* EINVAL: not pinned (a builder died): nothing */
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/refs", dir);
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(path);
}

/* Does the view in `dir` have no job, and had none for its hold? (release_idle's test) */
static int idle_past_hold(const char *dir)
{
    char path[PATH_MAX + 300], text[64] = "";
    struct stat st;
    double hold = 0;

    snprintf(path, sizeof path, "%s/refs", dir);
    DIR *d = opendir(path);
    if (d == NULL || fstat(dirfd(d), &st) != 0) {
        if (d)
            closedir(d);
        return 0;                               /* half-made: the resolver's gc takes it */
    }
    struct dirent *e;
    int used = 0;
    while (!used && (e = readdir(d)) != NULL)
        used = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    if (used)
        return 0;
    snprintf(path, sizeof path, "%s/hold", dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, text, sizeof text - 1);
        text[got > 0 ? got : 0] = '\0';
        close(fd);
        hold = strtod(text, NULL);
    }
    return difftime(time(NULL), st.st_mtime) >= hold;
}

/* Every shared view no job uses and none used for its hold: let go. A view busy (joined, built or
 * let go of by another) is left for next time, except `mine`, the one this release just dropped a
 * reference to, whose lock is waited for: two jobs' epilogs at once must not both leave it. */
static void release_idle_views(const char *run_dir, const char *mine)
{
    char views[PATH_MAX], dir[PATH_MAX + 64];

    snprintf(views, sizeof views, "%s/.views", run_dir);
    DIR *d = opendir(views);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!es_is_view_id(e->d_name))
            continue;
        snprintf(dir, sizeof dir, "%s/%s", views, e->d_name);
        int fd = es_view_lock(dir, mine[0] && strcmp(e->d_name, mine) == 0);
        if (fd < 0)
            continue;
        if (idle_past_hold(dir)) {
            let_go(dir);
            rmdir(dir);
        }
        close(fd);
    }
    closedir(d);
}

/* The shared view the pin at `pin` names in its `view` file, or "" (its own view, or none). */
static void view_of(const char *pin, char vid[40])
{
    char path[PATH_MAX + 512];
    vid[0] = '\0';
    snprintf(path, sizeof path, "%s/view", pin);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t got = read(fd, vid, 39);
    close(fd);
    vid[got > 0 ? got : 0] = '\0';
    vid[strcspn(vid, "\n")] = '\0';
    if (!es_is_view_id(vid))
        vid[0] = '\0';
}

/* Does the node hold image mounts (run_dir/.images has an entry)? */
static int holds_images(const char *run_dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/.images", run_dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return found;
}

/* Is the pin a tree's or the host's? Its plan.json's top-level "kind": plan.py to_json (and the
 * decision cache's compact copy, es_cache.c write_pin) sort the keys, so it is the first "kind":
 * after "digest" and "environment" (strings, in which an unescaped `"kind":` cannot occur) and
 * before the operations. 0 for an image's, a user image's, or a plan that cannot be read: while the
 * node holds image mounts, those go to the resolver, which lets go of the idle ones as their last
 * view goes (holders.py). A tree's pin is released here even then: the idle images wait for the
 * next resolver run (a prepare, the release of an image's pin, `envsched gc`). */
static int tree_or_local(const char *run_dir, const char *key)
{
    char path[PATH_MAX + 256], buf[2048];
    snprintf(path, sizeof path, "%s/%s/plan.json", run_dir, key);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *k = strstr(buf, "\"kind\":");
    if (k == NULL)
        return 0;
    k += strlen("\"kind\":");
    k += strspn(k, " ");
    for (const char *const *kind = (const char *const[]){"\"tree\"", "\"local\"", NULL}; *kind; kind++)
        if (strncmp(k, *kind, strlen(*kind)) == 0 && strchr(",} \n", k[strlen(*kind)]) != NULL &&
            k[strlen(*kind)] != '\0')
            return 1;
    return 0;
}

/* The fault points (es_fault.h), where the program links es_fault.o (weak: a shim that does not,
 * the Grid Engine epilog, has none) */
void es_fault(const char *run_dir, const char *point) __attribute__((weak));
#define FAULT(point) do { if (es_fault) es_fault(run_dir, point); } while (0)

int es_release_pin(const char *run_dir, const char *key, char *why, size_t whylen)
{
    char path[PATH_MAX + 256];
    struct stat st;

    /* 1. the pin: a directory (never a link) under run_dir, or nothing to do */
    if (strchr(key, '/') || key[0] == '.' || key[0] == '\0') {
        snprintf(why, whylen, "not a pin key: %.200s", key);
        return ES_RELEASE_FAILED;
    }
    snprintf(path, sizeof path, "%s/%s", run_dir, key);
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return ES_RELEASE_NONE;
    /* 2. more than a view to let go: the resolver's */
    for (const char *const *f = resolver_files; *f; f++) {
        snprintf(path, sizeof path, "%s/%s/%s", run_dir, key, *f);
        if (lstat(path, &st) == 0)
            return ES_RELEASE_RESOLVER;
    }
    if (holds_images(run_dir) && !tree_or_local(run_dir, key))
        return ES_RELEASE_RESOLVER;
    /* 3. detach the pinned mount namespace: the view dies with its last process (a shared view:
     * with the last of its jobs' pins and its own, released below once idle past its hold) */
    char vid[40];
    snprintf(path, sizeof path, "%s/%s", run_dir, key);
    view_of(path, vid);
    snprintf(path, sizeof path, "%s/%s/mnt", run_dir, key);
    if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
        snprintf(why, whylen, "umount2 %.300s: %s", path, strerror(errno));
        return ES_RELEASE_FAILED;
    }
    FAULT("release-c-unmounted");
    /* 4. a shared view: one job less; the views idle past their hold let go (before the pin's
     *    directory goes: once it is gone, so is what it held) */
    char ref[PATH_MAX + 300];
    if (vid[0]) {
        snprintf(ref, sizeof ref, "%s/.views/%s/refs/%s", run_dir, vid, key);
        unlink(ref);
    }
    FAULT("release-c-unref");
    release_idle_views(run_dir, vid);
    /* 5. the pin's files, then its directory (gone meanwhile: released by another) */
    unlink(path);
    for (int i = 0; pin_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", run_dir, key, pin_files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/%s", run_dir, key);
    if (rmdir(path) != 0) {
        if (errno == ENOENT)
            return ES_RELEASE_NONE;
        snprintf(why, whylen, "rmdir %.300s: %s", path, strerror(errno));
        return ES_RELEASE_FAILED;
    }
    return ES_RELEASED;
}

int es_release_logged(const char *run_dir, const char *key, const char *log_file, const char *fields,
                      char *why, size_t whylen)
{
    char line[1024];
    int rc = es_release_pin(run_dir, key, why, whylen);
    if (rc == ES_RELEASED && log_file && log_file[0]) {
        snprintf(line, sizeof line, "event=released key=%.200s%.700s", key, fields ? fields : "");
        es_admin_log(log_file, line);
    }
    return rc;
}

void es_admin_log(const char *log_file, const char *line)
{
    char stamp[64], text[8192];
    time_t now = time(NULL);
    struct tm tm;
    struct stat st;

    if (log_file == NULL || !log_file[0])
        return;
    int fd = open(log_file, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_uid == 0) {
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z", localtime_r(&now, &tm));
        int n = snprintf(text, sizeof text, "%s envsched[%d]: %s\n", stamp, (int)getpid(), line);
        if (n > 0 && (size_t)n < sizeof text && write(fd, text, (size_t)n) < 0) {
            /* nowhere else to say it: the caller also tells syslog or slurmd's log */
        }
    }
    close(fd);
}
