/* envsched SPANK plugin: the dispatcher. One small file per context does the work:
 *   local.c    srun/sbatch/salloc (as the user): refuse a bad request before it is queued
 *   remote.c   slurmstepd: prepare the view once per job per node, tasks join it
 *   prolog.c   job prolog (root, once per job per node): record the job's partition and account
 *   epilog.c   job epilog (root, once per job per node): release the view, remove the record
 */
#include "envsched_spank.h"

#pragma GCC visibility push(default)
SPANK_PLUGIN(envsched, 1);

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    spank_context_t ctx = spank_context();

    if (es_config_parse(ac, av) != 0)
        return -1;
    /* options are registered here, not via a static table: sbatch/salloc do not see one (22.05) */
    if (ctx == S_CTX_LOCAL || ctx == S_CTX_ALLOCATOR || ctx == S_CTX_REMOTE)
        return es_option_register(sp);
    return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
    if (es_config_parse(ac, av) != 0)
        return -1;
    if (spank_context() == S_CTX_LOCAL || spank_context() == S_CTX_ALLOCATOR)
        return es_local_check(sp);
    return 0;
}

int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
    if (es_config_parse(ac, av) != 0)
        return -1;
    if (spank_context() != S_CTX_REMOTE)
        return 0;
    es_launch_stub_bind(&es_cfg);            /* launch.c: before Slurm 23.11, for the launcher */
    return es_remote_user_init(sp);
}

int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
    (void)ac, (void)av;
    return spank_context() == S_CTX_REMOTE ? es_remote_task_privileged(sp) : 0;
}

int slurm_spank_task_post_fork(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? es_remote_tasks_forked(sp) : 0;
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    return spank_context() == S_CTX_REMOTE ? es_remote_tasks_forked(sp) : 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
    (void)ac, (void)av;
    return spank_context() == S_CTX_REMOTE ? es_remote_task_init(sp) : 0;
}

/* slurmd runs the job prolog and epilog in a process of its own that does not call
 * slurm_spank_init: the plugstack arguments arrive here. */
int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
    if (es_config_parse(ac, av) != 0)
        return -1;
    return spank_context() == S_CTX_JOB_SCRIPT ? es_job_prolog(sp) : 0;
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
    if (es_config_parse(ac, av) != 0)
        return -1;
    return spank_context() == S_CTX_JOB_SCRIPT ? es_job_epilog(sp) : 0;
}
#pragma GCC visibility pop
