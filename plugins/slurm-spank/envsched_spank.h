/* envsched SPANK plugin: shared declarations.
 *
 * The plugin decides nothing: the Python resolver (`envsched`) reads the site policy and
 * builds the view; this code gathers the job's request, runs the resolver once per job per
 * node, and makes every task join the pinned view. See docs/admin.md, "Slurm".
 */
#ifndef ENVSCHED_SPANK_H
#define ENVSCHED_SPANK_H

#include <limits.h>
#include <stddef.h>
#include <slurm/spank.h>

#include "../common/envsched_exit.h"
#include "../common/es_run.h"

#define ES_PREFIX "envsched: "
#define ES_MAX_BINDS 16
#define ES_MSG_MAX 1024

struct es_config {
    char policy[PATH_MAX];              /* policy=   site policy file                       */
    char resolver[PATH_MAX];            /* resolver= the envsched command (absolute path)   */
    char run_dir[PATH_MAX];             /* run_dir=  where the resolver keeps pins          */
    char binds[ES_MAX_BINDS][PATH_MAX]; /* bind=     extra host paths for every view        */
    int nbinds;
    char host_tools[PATH_MAX];          /* host_tools= wrappers of the host's Slurm clients */
    int validate;                       /* validate= 0: no submit-time check (inside views) */
    int debug;                          /* debug     replay the resolver's log on success  */
};

/* config.c */
extern struct es_config es_cfg;
int es_config_parse(int ac, char **av);

/* request.c: the job's raw request (the --chos option) */
extern char es_option[128];
extern int es_option_set;
int es_option_register(spank_t sp);

/* run.c (runner: ../common/es_run.c): the resolver as a child with a clean environment */
void es_replay_log(const struct es_run *r);

/* local.c: submit time (srun, sbatch, salloc as the user) */
int es_local_check(spank_t sp);

/* remote.c: slurmstepd */
int es_remote_user_init(spank_t sp);
int es_remote_task_privileged(spank_t sp);
int es_remote_task_init(spank_t sp);

/* epilog.c: the job epilog on each node */
int es_job_epilog(spank_t sp);

#endif
