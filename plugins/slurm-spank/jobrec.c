/* The job record: the job's partition and account as the controller gave them, written by the job
 * prolog and read by every step on the node.
 *
 * Why: a step's environment is its srun's (the user's); slurmstepd passes it on as it came, and
 * SPANK 22.05 has no item for the partition or the account. The job prolog, though, runs as root
 * in slurmd with an environment slurmd builds from the job credential, which slurmctld signed:
 * SLURM_JOB_PARTITION and SLURM_JOB_ACCOUNT there are the job's own (prep_script_slurmd.c:
 * _build_env). So the prolog writes them down once per job and node, and user_init reads them.
 *
 *   run_dir/.jobs/slurm-<job>   root's, 0644, in a directory of root's (0700) inside run_dir
 *   uid 1001                    one "name value" line each (the format of src/envsched/jobrecord.py);
 *   user alice                  values are single-line text of at most 255 characters
 *   queue debug                 the partition
 *   account proj                empty or absent: the job has no account
 *
 * A directory whose name starts with a dot is never taken for a pin (names.py). The epilog
 * removes the record; a record that is missing or not root's alone refuses the job's steps.
 */
#include <stdio.h>

#include "../common/es_jobrec.h"
#include "envsched_spank.h"

void es_jobrec_key(uint32_t job, char *key, size_t cap)
{
    snprintf(key, cap, "slurm-%u", job);
}

int es_jobrec_write(const char *run_dir, uint32_t job, uid_t uid, const char *user, const char *queue,
                    const char *account, char *err, size_t errlen)
{
    char key[32];

    es_jobrec_key(job, key, sizeof key);
    return es_jobrec_write_key(run_dir, key, uid, user, queue, account, err, errlen);
}

void es_jobrec_remove(const char *run_dir, uint32_t job)
{
    char key[32], err[PATH_MAX + 64];

    es_jobrec_key(job, key, sizeof key);
    if (es_jobrec_remove_key(run_dir, key, err, sizeof err) != 0)
        slurm_error(ES_PREFIX "%s", err);
}

ssize_t es_jobrec_read(const char *run_dir, uint32_t job, char *buf, size_t cap)
{
    char key[32];

    es_jobrec_key(job, key, sizeof key);
    return es_jobrec_read_key(run_dir, key, buf, cap);
}
