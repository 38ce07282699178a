/* Build a view in the calling process from a plan Python wrote: the C twin of
 * src/envsched/view.py (build_view), for the operation kinds a tree's plan has. C decides nothing
 * here: every operation, path and flag comes from the plan; the steps, their order, the checks
 * (a mount target never crosses a symbolic link) and the messages are view.py's.
 *
 *   1. unshare(CLONE_NEWNS)        (+ CLONE_NEWUSER and id maps on the unprivileged path)
 *   2. every mount a slave         nothing we mount propagates back to the host
 *   3. tmpfs staging root          over ES_VIEW_SCRATCH (/tmp), a directory every host has
 *   4. pivot_root into it          the host root is now /oldroot; sources are read there
 *   5. tmpfs /newroot              the view's own "/", mount points made on demand
 *   6. the plan's ops              env_dir, bind, remount, login_env, in plan order
 *   7. pivot_root into /newroot    and detach the staging root (and the host root with it)
 *
 * Kinds it does not apply (an image, a user's image, devices, GPU driver files, writable, node
 * hooks, isolation namespaces) are never handed to it: the caller's entry holds no such plan
 * (src/envsched/runcache.py), and es_view_add refuses an unknown kind. */
#ifndef ES_VIEW_H
#define ES_VIEW_H

#include <stddef.h>

#define ES_VIEW_MAX_OPS 128

enum es_view_op_kind { ES_VIEW_ENV_DIR, ES_VIEW_BIND, ES_VIEW_REMOUNT, ES_VIEW_LOGIN_ENV, ES_VIEW_PIVOT_ROOT };

struct es_view_op {
    enum es_view_op_kind kind;
    const char *a;              /* env_dir: name; bind: source (a host path); remount: target;
                                   login_env: the directory                                   */
    const char *b;              /* bind: target; login_env: the file's name                  */
    int required, recursive;    /* bind, remount                                             */
    int ro, nosuid, nodev;      /* remount                                                   */
};

struct es_view_plan {
    const char *source;         /* the tree, a host path                                     */
    const char *login_text;     /* the login shells' snippet (loginenv.py), for login_env    */
    int nops;
    struct es_view_op ops[ES_VIEW_MAX_OPS];
};

/* One "mount KIND FIELDS..." line of an entry (tab-separated, in place): its op appended to p.
 * 0, or -1 for a kind or field count it does not know (the caller then leaves it to Python). */
int es_view_add(struct es_view_plan *p, char *fields);

/* Steps 1-7 in this process (single-threaded). 0 with "/" the view; else an exit code
 * (ENVSCHED_EXIT_ENV_BROKEN, ENVSCHED_EXIT_SETUP_FAILED) and view.py's message in err. After a
 * failure the process stands in a half-built namespace of its own: it must only report and exit. */
int es_view_build(const struct es_view_plan *p, int unprivileged, char *err, size_t errlen);

#endif
