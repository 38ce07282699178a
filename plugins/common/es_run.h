/* Run the resolver (the `envsched` command) as a child process with a clean environment.
 * Shared by every C shim; see es_run.c. */
#ifndef ES_RUN_H
#define ES_RUN_H

#include <stddef.h>

#include "envsched_exit.h"

#ifndef ES_PREFIX
#define ES_PREFIX "envsched: "
#endif

struct es_run {
    int status;              /* exit code, or 128+signal, or -1 if it could not start */
    char out[16384];
    size_t out_len;
    char err[16384];
    size_t err_len;
};

/* become_root: take real, effective and saved uid 0 (and no groups) before exec; for callers
 * whose real uid is root but not their effective one, or set-user-ID-root programs. */
int es_run(char *const argv[], int become_root, struct es_run *r);
/* The one line for the user: the resolver's last "envsched: " line, else a generic one. */
const char *es_user_line(const struct es_run *r, char *buf, size_t len);

/* May root run the program at path? The path is resolved component by component: "/" and every
 * directory crossed must be root's and not writable by group or others (es_trusted_path's rule);
 * a symbolic link must be root's (it sits in a directory judged already; its mode means nothing)
 * and its target is judged the same way, link after link; the program itself must be a regular file
 * of root's, not writable by group or others. A "#!" line's interpreter is judged the same way
 * (nested interpreters too), and for "#!/usr/bin/env NAME" the NAME found in the clean PATH.
 * es_run calls it in the child before every exec. 0, or -1 with the reason in err and errno ENOENT
 * when the program does not exist, else EPERM. */
int es_trusted_program(const char *path, char *err, size_t errlen);
/* Hand this process over to argv (execv) when es_trusted_program allows argv[0]: returns only
 * when it could not (-1, the reason in err). The C prolog and prologue give a Python shim what
 * they leave to it this way. */
int es_exec_trusted(char *const argv[], char *err, size_t errlen);
/* The same walk for a directory (e.g. a run_dir): 0, or -1 with the reason in err. */
int es_trusted_dir(const char *path, char *err, size_t errlen);

#endif
