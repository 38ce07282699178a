/* The C fronts of the two commands, `chos` (chos.c) and `envsched` (envsched.c): each runs one
 * warm form without starting Python (a user's `chos run NAME -- COMMAND`, root's `envsched exec
 * --user U --request NAME -- COMMAND`) from a plan the Python command wrote into a run cache
 * (src/envsched/runcache.py), every input it recorded unchanged (../common/es_cache.c's checks),
 * and hands everything else, and any doubt, to `PYTHON -I -m envsched.cli.TOOL` with the same
 * arguments. Python decides; the fronts apply what it wrote (front.c, ../common/es_view.c). */
#ifndef ES_FRONT_H
#define ES_FRONT_H

#include <stddef.h>

#include "../common/es_cache.h"
#include "../common/es_view.h"

#ifndef ES_FRONT_PYTHON
#define ES_FRONT_PYTHON "/usr/bin/python3"
#endif

/* What a run cache entry holds beyond es_entry_check's lines (runcache.py). */
struct es_front_entry {
    struct es_view_plan plan;
    char *env;                  /* the environment's name                                   */
    char *log_file;             /* root's entries: the admin log (site.log_file), or NULL   */
    char *chdir[8];             /* the plan's directories after the caller's own (home, "/") */
    int nchdir;
    char shim[16384];           /* "env ..." and "launcher ..." lines (shim.py's protocol)  */
    size_t shim_len;
    char login[16384];          /* the login shells' snippet, its lines joined again        */
    size_t login_len;
};

/* Hand the whole command line to `PYTHON -I -m envsched.cli.<tool>` (PYTHON: $ENVSCHED_CHOS_PYTHON
 * when absolute, else ES_FRONT_PYTHON). `why` (a miss's reason) is said with ENVSCHED_CHOS_DEBUG
 * set. Never returns. */
void es_front_python(char **argv, const char *tool, const char *why) __attribute__((noreturn));

/* "envsched: MESSAGE" on stderr, then exit(code). */
void es_front_fail(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Read run cache entry `path` (owner's alone: regular, 0600, one link, O_NOFOLLOW) and check it
 * for `inputs` and user u (es_entry_check, header `header`); 0 with e filled, else -1 and the
 * reason in why. */
int es_front_entry(const char *path, uid_t owner, const char *header, const char *inputs, const struct es_user *u,
                   struct es_front_entry *e, char *why, size_t whylen);

/* In the view, as enter.py's enter_and_exec: the view (es_view_build; unprivileged: in a user
 * namespace of the caller's), its launcher checked; as root, the user's groups, gid and uid for
 * good with HOME, USER and LOGNAME theirs; chdir (the caller's directory, else the plan's); the
 * plan's env operations; no_new_privs; exec of command (through the launcher, if any). Never
 * returns: every failure is one line and enter.py's exit code. */
void es_front_enter(struct es_front_entry *e, char **command, int unprivileged, const struct es_user *u)
    __attribute__((noreturn));

#endif
