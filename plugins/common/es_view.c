/* Build a view from a plan: see es_view.h, and src/envsched/view.py, whose steps, checks and
 * messages these are (one comment per step of what the process does). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "envsched_exit.h"
#include "es_view.h"

#define SCRATCH "/tmp"          /* view.py: SCRATCH, OLD, NEW, LOGIN */
#define OLD "/oldroot"
#define NEW "/newroot"
#define LOGIN "/login"
#define ATTR_RO MOUNT_ATTR_RDONLY
#define ATTR_NOSUID MOUNT_ATTR_NOSUID
#define ATTR_NODEV MOUNT_ATTR_NODEV

struct build {
    const struct es_view_plan *p;
    char tree[PATH_MAX];        /* the tree's path after symlinks, resolved on the host (view.py:
                                   _resolve_host_paths): once the host is /oldroot, an absolute
                                   symlink would point into the staging root */
    char *resolved[ES_VIEW_MAX_OPS];    /* each bind's source, likewise */
    const char *skipped[ES_VIEW_MAX_OPS];
    int nskipped;
    char *err;
    size_t errlen;
    int code;
};

static int fail(struct build *b, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct build *b, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    b->code = code;
    return -1;
}

/* linux.py _fail: "OP failed: strerror (ENAME)", a setup failure */
static int sys_fail(struct build *b, const char *op, const char *a, const char *c)
{
    int e = errno;
    const char *name = strerrorname_np(e);
    return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "%s(%s%s%s) failed: %s (%s)", op, a, c ? ", " : "", c ? c : "",
                strerror(e), name ? name : "?");
}

/* a path into out; one that does not fit is a setup failure, never a shorter path */
static int pathf(struct build *b, char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int pathf(struct build *b, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap)
        return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "a path of the view is too long (%.64s...)", out);
    return 0;
}

static int do_mount(struct build *b, const char *src, const char *target, const char *type,
                    unsigned long flags, const char *data)
{
    if (mount(src, target, type, flags, data) == 0)
        return 0;
    char what[PATH_MAX * 2 + 64];
    snprintf(what, sizeof what, "'%s', '%s', %s, 0x%lx", src ? src : "None", target, type ? type : "None", flags);
    return sys_fail(b, "mount", what, NULL);
}

static int setattr(struct build *b, const char *path, unsigned long long set, int recursive)
{
    struct mount_attr attr = {.attr_set = set};
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof attr) == 0)
        return 0;
    char what[32];
    snprintf(what, sizeof what, "0x%llx%s", set, recursive ? ", recursive" : "");
    return sys_fail(b, "mount_setattr", path, what);
}

static int write_file(struct build *b, const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "writing '%s' failed: %s (errno %d)", path, strerror(e), e);
    }
    close(fd);
    return 0;
}

/* view.py _mkdir: an existing one is fine; EROFS inside a read-only tree directory is the tree's */
static int make_dir(struct build *b, const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno == EROFS && strncmp(path, NEW "/", sizeof NEW) == 0)
        return fail(b, ENVSCHED_EXIT_ENV_BROKEN, "mount point %s does not exist in the environment and its "
                    "parent comes read-only from the tree: create the directory in the tree", path + strlen(NEW));
    return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "mkdir('%s') failed: %s (errno %d)", path, strerror(errno), errno);
}

/* view.py _target: /newroot + rel, missing components made one at a time with lstat, a symbolic
 * link on the way refused: no bind can land outside the view */
static int target(struct build *b, const char *rel, int want_dir, char *out, size_t cap)
{
    char parts[PATH_MAX];
    size_t len = (size_t)snprintf(out, cap, "%s", NEW);
    snprintf(parts, sizeof parts, "%s", rel);
    char *save = NULL, *part = strtok_r(parts, "/", &save);
    while (part != NULL) {
        char *next = strtok_r(NULL, "/", &save);
        int last = next == NULL;
        struct stat st;
        int w = snprintf(out + len, cap - len, "/%s", part);
        if (w < 0 || (size_t)w >= cap - len)
            return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "mount target %s: path too long", rel);
        len += (size_t)w;
        if (lstat(out, &st) != 0) {
            if (errno != ENOENT)
                return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "lstat('%s') failed: %s", out, strerror(errno));
            if (last && !want_dir) {
                int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd < 0) {
                    if (errno == EROFS)
                        return fail(b, ENVSCHED_EXIT_ENV_BROKEN, "mount point %s does not exist in the environment "
                                    "and its parent comes read-only from the tree: create the file in the tree", rel);
                    return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "creating mountpoint '%s' failed: %s (errno %d)",
                                rel, strerror(errno), errno);
                }
                close(fd);
            } else if (make_dir(b, out) != 0) {
                return -1;
            }
        } else if (S_ISLNK(st.st_mode)) {
            return fail(b, ENVSCHED_EXIT_ENV_BROKEN, "mount target '%s' crosses a symbolic link in the view (%s)",
                        rel, out + strlen(NEW));
        } else if (!last && !S_ISDIR(st.st_mode)) {
            return fail(b, ENVSCHED_EXIT_ENV_BROKEN, "mount target '%s': %s is not a directory", rel, out + strlen(NEW));
        } else if (last && !S_ISDIR(st.st_mode) != !want_dir) {
            return fail(b, ENVSCHED_EXIT_ENV_BROKEN, "mount target '%s' is a %s in the view but the source is not",
                        rel, want_dir ? "file" : "directory");
        }
        part = next;
    }
    return 0;
}

/* an env_dir: a top-level directory of the tree, bound read-only (nosuid, nodev), or re-made as
 * the symbolic link it is (merged /usr: bin -> usr/bin); absent from this tree: nothing */
static int op_env_dir(struct build *b, const struct es_view_op *op)
{
    char source[PATH_MAX], tgt[PATH_MAX], link[PATH_MAX];
    struct stat st;
    if (pathf(b, source, sizeof source, OLD "%s/%s", b->tree, op->a) != 0)
        return -1;
    if (lstat(source, &st) != 0)
        return 0;
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(source, link, sizeof link - 1);
        if (n < 0)
            return sys_fail(b, "readlink", source, NULL);
        link[n] = '\0';
        if (pathf(b, tgt, sizeof tgt, NEW "/%s", op->a) != 0)
            return -1;
        return symlink(link, tgt) == 0 ? 0 : sys_fail(b, "symlink", link, tgt);
    }
    char rel[NAME_MAX + 2];
    snprintf(rel, sizeof rel, "/%s", op->a);
    if (target(b, rel, 1, tgt, sizeof tgt) != 0 || do_mount(b, source, tgt, NULL, MS_BIND | MS_REC, NULL) != 0)
        return -1;
    return setattr(b, tgt, ATTR_RO | ATTR_NOSUID | ATTR_NODEV, 1);
}

static int is_skipped(const struct build *b, const char *t)
{
    for (int i = 0; i < b->nskipped; i++)
        if (strcmp(b->skipped[i], t) == 0)
            return 1;
    return 0;
}

/* a bind of a host path; an optional one that is missing here (or has no place in the view, like
 * /etc/hosts in a tree without /etc) is skipped, and so is its remount */
static int op_bind(struct build *b, const struct es_view_op *op, const char *resolved)
{
    char source[PATH_MAX], tgt[PATH_MAX];
    struct stat st;
    if (pathf(b, source, sizeof source, OLD "%s", strcmp(resolved, "/") ? resolved : "") != 0)
        return -1;
    if (stat(source, &st) != 0) {
        if (op->required)
            return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "required path %s is not available on this host: %s",
                        op->a, strerror(errno));
        b->skipped[b->nskipped++] = op->b;
        return 0;
    }
    if (target(b, op->b, S_ISDIR(st.st_mode), tgt, sizeof tgt) != 0) {
        if (op->required)
            return -1;
        b->skipped[b->nskipped++] = op->b;
        return 0;
    }
    return do_mount(b, source, tgt, NULL, MS_BIND | (op->recursive ? MS_REC : 0), NULL);
}

static int op_remount(struct build *b, const struct es_view_op *op)
{
    char tgt[PATH_MAX];
    unsigned long long attrs = (op->ro ? ATTR_RO : 0) | (op->nosuid ? ATTR_NOSUID : 0) | (op->nodev ? ATTR_NODEV : 0);
    if (is_skipped(b, op->a) || attrs == 0)
        return 0;
    if (pathf(b, tgt, sizeof tgt, NEW "%s", strcmp(op->a, "/") ? op->a : "") != 0)
        return -1;
    return setattr(b, tgt, attrs, op->recursive);
}

/* view.py _write_new: a new file (never through a link), mode 0644 whatever the umask */
static int write_new(struct build *b, const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fchmod(fd, 0644) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "login shells' file %s: %s (errno %d)", path, strerror(e), e);
    }
    close(fd);
    return 0;
}

/* view.py _existing_dir: /newroot + rel when every component is a directory (not a link) */
static int existing_dir(const char *rel, char *out, size_t cap)
{
    char parts[PATH_MAX];
    size_t len = (size_t)snprintf(out, cap, "%s", NEW);
    snprintf(parts, sizeof parts, "%s", rel);
    char *save = NULL;
    for (char *part = strtok_r(parts, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        struct stat st;
        int w = snprintf(out + len, cap - len, "/%s", part);
        if (w < 0 || (size_t)w >= cap - len || lstat(out, &st) != 0 || !S_ISDIR(st.st_mode))
            return -1;
        len += (size_t)w;
    }
    return 0;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* view.py _login_shadow: a tmpfs over the directory holding its entries (each bound from the
 * covered directory) and the snippet, all read-only */
static int login_shadow(struct build *b, const char *tgt, const char *name)
{
    const char *lower = LOGIN "/lower";
    char *names[1024];
    int n = 0, rc = -1;
    if (make_dir(b, lower) != 0 || do_mount(b, tgt, lower, NULL, MS_BIND | MS_REC, NULL) != 0)
        return -1;
    DIR *d = opendir(lower);
    if (d == NULL)
        return sys_fail(b, "opendir", lower, NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, name))
            continue;
        if (n == 1024 || (names[n] = strdup(e->d_name)) == NULL) {
            closedir(d);
            fail(b, ENVSCHED_EXIT_SETUP_FAILED, "login shells' file in %s: too many entries", tgt + strlen(NEW));
            goto out;
        }
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    if (do_mount(b, "envsched-login", tgt, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        char source[PATH_MAX], dest[PATH_MAX], link[PATH_MAX];
        struct stat st;
        if (pathf(b, source, sizeof source, "%s/%s", lower, names[i]) != 0 ||
            pathf(b, dest, sizeof dest, "%s/%s", tgt, names[i]) != 0)
            goto out;
        if (lstat(source, &st) != 0) {
            sys_fail(b, "lstat", source, NULL);
            goto out;
        }
        if (S_ISLNK(st.st_mode)) {
            ssize_t len = readlink(source, link, sizeof link - 1);
            if (len < 0 || (link[len] = '\0', symlink(link, dest)) != 0) {
                sys_fail(b, "symlink", source, dest);
                goto out;
            }
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (mkdir(dest, 0755) != 0) {
                sys_fail(b, "mkdir", dest, NULL);
                goto out;
            }
        } else if (S_ISREG(st.st_mode)) {
            int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd < 0) {
                sys_fail(b, "open", dest, NULL);
                goto out;
            }
            close(fd);
        } else {
            continue;                   /* no fifos or devices in a profile directory */
        }
        if (do_mount(b, source, dest, NULL, MS_BIND | MS_REC, NULL) != 0)
            goto out;
    }
    char file[PATH_MAX];
    if (pathf(b, file, sizeof file, "%s/%s", tgt, name) != 0 || write_new(b, file, b->p->login_text) != 0)
        goto out;
    rc = setattr(b, tgt, ATTR_RO | ATTR_NOSUID | ATTR_NODEV, 1);
out:
    for (int i = 0; i < n; i++)
        free(names[i]);
    return rc;
}

/* view.py _op_login_env: the snippet as DIR/NAME in the view only, where the tree has DIR: a
 * one-file read-only overlay layer on it, else (overlayfs refused, a bind inside DIR, a path
 * overlayfs cannot name) the tmpfs of login_shadow */
static int op_login_env(struct build *b, const struct es_view_op *op)
{
    char tgt[PATH_MAX], file[PATH_MAX], data[PATH_MAX * 2 + 32], inside[PATH_MAX];
    const char *layer = LOGIN "/layer";
    int submounts = 0;
    if (strchr(op->b, '/') || !op->b[0] || !strcmp(op->b, ".") || !strcmp(op->b, ".."))
        return fail(b, ENVSCHED_EXIT_SETUP_FAILED, "login_env: bad file name '%s'", op->b);
    if (existing_dir(op->a, tgt, sizeof tgt) != 0)
        return 0;
    snprintf(inside, sizeof inside, "%s", op->a);
    size_t n = strlen(inside);
    while (n > 0 && inside[n - 1] == '/')
        inside[--n] = '\0';
    strncat(inside, "/", sizeof inside - n - 1);
    for (int i = 0; i < b->p->nops; i++)
        if (b->p->ops[i].kind == ES_VIEW_BIND && strncmp(b->p->ops[i].b, inside, strlen(inside)) == 0)
            submounts = 1;
    if (pathf(b, file, sizeof file, "%s/%s", layer, op->b) != 0)
        return -1;
    if (make_dir(b, LOGIN) != 0 || make_dir(b, layer) != 0 || write_new(b, file, b->p->login_text) != 0)
        return -1;
    if (!submounts && strpbrk(tgt, ",:\\") == NULL) {
        if (pathf(b, data, sizeof data, "ro,lowerdir=%s:%s", layer, tgt) == 0 && mount("envsched-login", tgt, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, data) == 0)
            return 0;                   /* else the tmpfs does the same */
    }
    return login_shadow(b, tgt, op->b);
}

/* 7. the view becomes "/": pivot_root(".", ".") stacks the staging root on top, and detaching it
 *    takes /oldroot (the host) with it */
static int op_pivot_root(struct build *b)
{
    if (chdir(NEW) != 0)
        return sys_fail(b, "chdir", NEW, NULL);
    if (syscall(SYS_pivot_root, ".", ".") != 0)
        return sys_fail(b, "pivot_root", "'.'", "'.'");
    if (umount2(".", MNT_DETACH) != 0)
        return sys_fail(b, "umount2", "'.'", NULL);
    return chdir("/") == 0 ? 0 : sys_fail(b, "chdir", "/", NULL);
}

/* view.py enter_user_namespace: only the caller's uid and gid, mapped to themselves, setgroups
 * denied; with the mount namespace in the same call (it then belongs to the new user namespace) */
static int unshare_namespaces(struct build *b, int unprivileged)
{
    char map[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWNS | (unprivileged ? CLONE_NEWUSER : 0)) != 0)
        return sys_fail(b, "unshare", unprivileged ? "CLONE_NEWUSER|CLONE_NEWNS" : "CLONE_NEWNS", NULL);
    if (!unprivileged)
        return 0;
    if (write_file(b, "/proc/self/setgroups", "deny") != 0)
        return -1;
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    if (write_file(b, "/proc/self/uid_map", map) != 0)
        return -1;
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    return write_file(b, "/proc/self/gid_map", map);
}

int es_view_add(struct es_view_plan *p, char *fields)
{
    char *f[8];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(fields, "\t", &save); t; t = strtok_r(NULL, "\t", &save)) {
        if (n == 8)
            return -1;
        f[n++] = t;
    }
    if (n == 0 || p->nops == ES_VIEW_MAX_OPS)
        return -1;
    struct es_view_op *op = &p->ops[p->nops];
    memset(op, 0, sizeof *op);
    if (!strcmp(f[0], "env_dir") && n == 2 && f[1][0] && !strchr(f[1], '/')) {
        op->kind = ES_VIEW_ENV_DIR;
        op->a = f[1];
    } else if (!strcmp(f[0], "bind") && n == 5 && f[1][0] == '/' && f[2][0] == '/') {
        op->kind = ES_VIEW_BIND;
        op->a = f[1];
        op->b = f[2];
        op->required = !strcmp(f[3], "1");
        op->recursive = !strcmp(f[4], "1");
    } else if (!strcmp(f[0], "remount") && n == 6 && f[1][0] == '/') {
        op->kind = ES_VIEW_REMOUNT;
        op->a = f[1];
        op->ro = !strcmp(f[2], "1");
        op->nosuid = !strcmp(f[3], "1");
        op->nodev = !strcmp(f[4], "1");
        op->recursive = !strcmp(f[5], "1");
    } else if (!strcmp(f[0], "login_env") && n == 3 && f[1][0] == '/') {
        op->kind = ES_VIEW_LOGIN_ENV;
        op->a = f[1];
        op->b = f[2];
    } else if (!strcmp(f[0], "pivot_root") && n == 1) {
        op->kind = ES_VIEW_PIVOT_ROOT;
    } else {
        return -1;
    }
    p->nops++;
    return 0;
}

int es_view_build(const struct es_view_plan *p, int unprivileged, char *err, size_t errlen)
{
    static struct build b;
    int rc = 0;

    memset(&b, 0, sizeof b);
    b.p = p;
    b.err = err;
    b.errlen = errlen;
    b.code = ENVSCHED_EXIT_SETUP_FAILED;
    err[0] = '\0';
    /* host paths resolved while the host root is still "/" */
    if (realpath(p->source, b.tree) == NULL)
        snprintf(b.tree, sizeof b.tree, "%s", p->source);
    for (int i = 0; i < p->nops; i++)
        if (p->ops[i].kind == ES_VIEW_BIND) {
            b.resolved[i] = realpath(p->ops[i].a, NULL);
            if (b.resolved[i] == NULL && (b.resolved[i] = strdup(p->ops[i].a)) == NULL)
                return fail(&b, ENVSCHED_EXIT_SETUP_FAILED, "out of memory"), b.code;
        }
    /* 1. a mount namespace of our own (and a user namespace when unprivileged) */
    if (unshare_namespaces(&b, unprivileged) != 0)
        goto out;
    /* 2. slave, recursively: our mounts never reach the host; host mounts still reach us */
    if (do_mount(&b, NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
        goto out;
    /* 3. staging tmpfs over SCRATCH (the host's SCRATCH stays reachable via /oldroot) */
    if (do_mount(&b, "envsched-staging", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0)
        goto out;
    if (chdir(SCRATCH) != 0 || make_dir(&b, OLD + 1) != 0 || make_dir(&b, NEW + 1) != 0) {
        if (!b.err[0])
            sys_fail(&b, "chdir", SCRATCH, NULL);
        goto out;
    }
    /* 4. pivot into the staging root; the host root moves to /oldroot */
    if (syscall(SYS_pivot_root, ".", OLD + 1) != 0) {
        sys_fail(&b, "pivot_root", "'.'", "'oldroot'");
        goto out;
    }
    if (chdir("/") != 0) {
        sys_fail(&b, "chdir", "/", NULL);
        goto out;
    }
    /* 5. the view's root: a tmpfs of its own (made read-only by the plan once populated) */
    if (do_mount(&b, "envsched-view", NEW, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0)
        goto out;
    /* 6. the plan's mount ops, in order */
    for (int i = 0; i < p->nops; i++) {
        const struct es_view_op *op = &p->ops[i];
        switch (op->kind) {
        case ES_VIEW_ENV_DIR:
            rc = op_env_dir(&b, op);
            break;
        case ES_VIEW_BIND:
            rc = op_bind(&b, op, b.resolved[i]);
            break;
        case ES_VIEW_REMOUNT:
            rc = op_remount(&b, op);
            break;
        case ES_VIEW_LOGIN_ENV:
            rc = p->login_text ? op_login_env(&b, op) : fail(&b, ENVSCHED_EXIT_SETUP_FAILED, "login_env: no text");
            break;
        case ES_VIEW_PIVOT_ROOT:
            rc = op_pivot_root(&b);
            break;
        }
        if (rc != 0)
            goto out;
    }
    b.code = 0;
out:
    for (int i = 0; i < p->nops; i++)
        free(b.resolved[i]);
    return b.code;
}
