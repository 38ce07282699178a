/* The job epilog (root, once per job per node, also after scancel or a killed step):
 * release the job's views and remove its record (jobrec.c). Defining it costs slurmd an extra
 * slurmstepd per job (~30 ms); it is the one place that runs exactly when the job is over on
 * this node. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "envsched_spank.h"

int es_job_epilog(spank_t sp)
{
    uint32_t job = 0;
    char key[128];
    struct es_run r;

    if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS) {
        const char *id = getenv("SLURM_JOB_ID");
        if (id == NULL)
            return 0;
        job = (uint32_t)strtoul(id, NULL, 10);
    }
    /* slurm-<job>-<node index>[.<step>]: every view of the job on this host */
    snprintf(key, sizeof key, "slurm-%u", job);
    char *argv[] = {es_cfg.resolver, "--policy", es_cfg.policy, "release", "--key", key,
                    "--with-steps", "--quiet", NULL};
    int rc = es_run(argv, 0, &r);
    es_jobrec_remove(es_cfg.run_dir, job);
    if (rc != 0) {
        es_replay_log(&r, 1);
        slurm_error(ES_PREFIX "job %u: releasing its views failed (exit %d)", job, r.status);
        return -1;
    }
    return 0;
}
