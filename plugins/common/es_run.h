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

#endif
