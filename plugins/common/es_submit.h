/* The submit-time cache's reader (#13): the answer the resolver's submit-time check gave earlier
 * for exactly the same inputs (src/envsched/submitcache.py writes it), every input it read still
 * unchanged (es_cache.c's checks: the policy, the user, their groups, ~/.chos, the stamps and tree
 * of the version it pinned). C decides nothing here: it gives back the exit code and the lines the
 * resolver gave; anything it cannot check, does not know or finds changed is a miss.
 *
 * Used by Torque's submit filter (plugins/torque/torque/qsubfilter.c: the user's own
 * ~/.cache/envsched/submit, read as the user) and OpenPBS's queuejob hook through `pbs-prepare
 * submit` (plugins/torque/openpbs/joiner: root's run_dir/.submit, read as root), and Slurm's
 * srun/sbatch/salloc (plugins/slurm-spank/local.c: the user's own, read as the user). */
#ifndef ES_SUBMIT_H
#define ES_SUBMIT_H

#include <stddef.h>
#include <sys/types.h>

#include "es_cache.h"
#include "es_run.h"

#define ES_SUBMIT_HEADER "envsched-submit 1"
/* a user's own answers, below their home (submitcache.py DIR) */
#define ES_SUBMIT_DIR ".cache/envsched/submit"

struct es_submit_lookup {
    const char *path;           /* the entry's file: DIR/<es_cache_name(inputs)>             */
    uid_t owner;                /* whose alone it must be (mode 0600, one link)              */
    const char *inputs;         /* the inputs line it must hold, exactly                     */
    const struct es_user *u;    /* the user as NSS gives it now                              */
    int read_user_file;         /* 1: ~/.chos is an input (the request named nothing)        */
    int switch_ids;             /* 1: root reads ~/.chos as u; 0: we are u (or no ~/.chos)   */
};

/* ES_CACHE_HIT with the answer as the resolver's run gave it (status: its exit code, out and err:
 * its lines; es_user_line gives the one line for the user), else ES_CACHE_MISS with the reason. */
int es_submit_cached(const struct es_submit_lookup *l, struct es_run *a, char *why, size_t whylen);

/* The answer's first `out` line into buf (empty when none): 0, or -1 when it does not fit. */
int es_submit_first_out(const struct es_run *a, char *buf, size_t cap);

#endif
