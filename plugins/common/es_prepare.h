/* Prepare a job's pin on this node: from the decision cache when an earlier decision's inputs all
 * still hold (es_cache.h), else by the resolver (`envsched prepare`). One sequence for every shim
 * that prepares a view for a job it identified itself: the Grid Engine prolog and starter, the
 * Torque starter. (The Slurm plugin builds its own argv: it passes steps and a job record; it
 * shares es_config_id.)
 *
 * C decides nothing here: the request, the user and the partition go to the resolver as data,
 * and the cache only replays a decision the resolver wrote for exactly the same inputs. */
#ifndef ES_PREPARE_H
#define ES_PREPARE_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "es_run.h"

#define ES_PREPARE_MAX_BINDS 16

struct es_prepare {
    /* the shim's configuration (root's, like the policy) */
    const char *resolver;
    const char *policy;
    const char *run_dir;
    const char *log_file;               /* "" for none: the cache hit's admin line */
    const char *const *binds;           /* --bind for every view, nbinds of them */
    int nbinds;
    const char *host_tools;             /* "" for none: bound like a bind */
    int cache;                          /* 1: decision cache and shared views */
    /* the job, as the shim identified it (never from the job's environment) */
    const char *scheduler;              /* uge, torque: the admin log's scheduler= */
    const char *key;                    /* the pin's key */
    const char *fallback_key;           /* NULL: none */
    const char *job;                    /* the scheduler's job (and task) id */
    uid_t uid;
    pid_t owner;                        /* the pin's owner process (gc watches it) */
    const char *partition;              /* the queue; "" for none */
    const char *account;                /* "" for none */
    /* the request: the user's to choose, the policy decides (NULL or "" for none) */
    const char *request;                /* --request (Grid Engine's ENVSCHED_REQUEST) */
    const char *chos;                   /* the job's CHOS variable */
    const char *inputs;                 /* the decision's raw inputs, one line (es_prepare_inputs) */
    const char *extra_inputs;           /* NULL, or "\tNAME=VALUE..." es_prepare_inputs appends */
    int no_user_file;                   /* --no-user-file: the site's defaults alone (PAM's failure=default) */
    struct es_run *run;                 /* NULL, or where the resolver's run is kept (its log lines) */
    /* out: why the cache did not serve the job (the first input that differs), for the shim's log */
    char miss[512];
};

/* The inputs line of a decision: uid, request, chos, queue, account, config= (es_config_id of
 * the policy and the binds), user_file=0 with no_user_file, then extra_inputs. -1 when a value
 * holds a line break or a tab, or it does not fit. */
int es_prepare_inputs(const struct es_prepare *p, char *out, size_t cap);

/* config=: FNV-1a of the policy's path, every bind and host_tools, as 16 hex digits. Any change
 * of the shim's own arguments to the resolver is a change of the inputs. */
void es_config_id(const char *policy, const char *const *binds, int nbinds, const char *host_tools,
                  char out[17]);

/* The job's pin prepared: 0 and the resolver's protocol lines (shim.py) in shim; else the exit
 * status (envsched_exit.h) and the one line for the user in err. *by_cache: 1 when the cache
 * served it (no resolver ran). Runs as root (a root process, or a set-user-ID root one). */
int es_prepare_pin(struct es_prepare *p, char *shim, size_t shimlen, int *by_cache,
                   char *err, size_t errlen);

#endif
