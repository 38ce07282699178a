/* The job prolog (root, in a process slurmd starts once per job per node, before the job's first
 * step there): record the job's partition and account for its steps (jobrec.c).
 *
 * The environment here is slurmd's, not the job's: slurmd builds it from the job credential that
 * slurmctld signed (prep_script_slurmd.c: _build_env; SLURM_JOB_PARTITION from the credential
 * overrides the launch request's, SLURM_JOB_ACCOUNT is set only from the credential), and the
 * only user values in it are SPANK job options, all renamed SPANK_* (valid_spank_job_env).
 *
 * A record that cannot be written is logged and the prolog still succeeds (a failed prolog drains
 * the node): the job's steps then find no record and refuse to start, with a line that says so.
 */
#include <stdint.h>
#include <stdlib.h>

#include "envsched_spank.h"

static const char *env_or_empty(const char *name)
{
    const char *v = getenv(name);
    return v ? v : "";
}

int es_job_prolog(spank_t sp)
{
    uint32_t job = 0;
    uid_t uid = 0;
    char err[PATH_MAX + 128];

    if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS) {
        slurm_error(ES_PREFIX "job prolog: cannot read the job's id and user");
        return 0;
    }
    if (es_jobrec_write(es_cfg.run_dir, job, uid, env_or_empty("SLURM_JOB_USER"),
                        env_or_empty("SLURM_JOB_PARTITION"), env_or_empty("SLURM_JOB_ACCOUNT"),
                        err, sizeof err) != 0)
        slurm_error(ES_PREFIX "job %u: the job record was not written (its steps will be refused): %s",
                    job, err);
    return 0;
}
