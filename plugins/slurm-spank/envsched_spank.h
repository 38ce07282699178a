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
#include <stdint.h>
#include <sys/types.h>
#include <slurm/spank.h>

#include "../common/envsched_exit.h"
#include "../common/es_jobrec.h"
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
    int cache;                          /* cache= 0: always the resolver, never the decision cache */
    int debug;                          /* debug     replay the resolver's log on success  */
    char log_file[PATH_MAX];            /* log_file= the admin log (site.log_file), for the
                                           epilog's releases without Python; "" for none      */
};

/* config.c */
extern struct es_config es_cfg;
int es_config_parse(int ac, char **av);
int es_config_parse_args(struct es_config *cfg, int ac, char **av);   /* pure: the fuzz harness */

/* request.c: the job's raw request (the --chos option) */
extern char es_option[256];
extern int es_option_set;
extern const char *es_option_error;          /* the one line for a value that cannot be a name */
int es_option_register(spank_t sp);

/* run.c (runner: ../common/es_run.c): the resolver as a child with a clean environment */
void es_replay_log(const struct es_run *r, int as_error);
int es_exit_code(int status);

/* local.c: submit time (srun, sbatch, salloc as the user) */
int es_local_check(spank_t sp);

/* remote.c: slurmstepd */
int es_remote_user_init(spank_t sp);
int es_remote_task_privileged(spank_t sp);
int es_remote_task_init(spank_t sp);
int es_remote_tasks_forked(spank_t sp);

/* Slurm 23.11 and later: the task's argv grows in front (the environment's launcher, remote.c).
 * Declared weak here (older spank.h has no such function) and looked up when slurmstepd loads the
 * plugin: NULL before 23.11, where the stub (launch_stub.c) does the launcher's work. */
extern spank_err_t spank_prepend_task_argv(spank_t spank, int argc, const char *argv[])
    __attribute__((weak, visibility("default")));
/* launch.c: before 23.11, the stub beside this plugin as one more bind= (cfg->binds) of every view */
void es_launch_stub_bind(struct es_config *cfg);

/* prolog.c / epilog.c: the job prolog and epilog on each node (root, slurmd's environment) */
int es_job_prolog(spank_t sp);
int es_job_epilog(spank_t sp);

/* jobrec.c: run_dir/.jobs/slurm-<job>, the job's uid, partition and account as the controller
 * gave them to the job prolog; the steps take them from there, never from the job's environment */
void es_jobrec_key(uint32_t job, char *key, size_t cap);
int es_jobrec_write(const char *run_dir, uint32_t job, uid_t uid, const char *user, const char *queue,
                    const char *account, char *err, size_t errlen);
void es_jobrec_remove(const char *run_dir, uint32_t job);
/* as root: the record's text (-1: none, or not root's alone) */
ssize_t es_jobrec_read(const char *run_dir, uint32_t job, char *buf, size_t cap);

#endif
