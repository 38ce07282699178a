/* Submit time, as the user (srun/sbatch/salloc): refuse a bad request before it is queued.
 *
 * Steps inside an existing allocation (srun with SLURM_JOB_ID set) are not checked here: the
 * job's environment was checked when it was submitted, and a step asking for another one is
 * refused by slurmstepd with the same one-line message (no resolver start per srun).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "envsched_spank.h"

int es_local_check(spank_t sp)
{
    char uid[16], *chos = getenv("CHOS");
    char *argv[16];
    int n = 0;
    struct es_run r;

    (void)sp;
    if (!es_cfg.validate || (spank_context() == S_CTX_LOCAL && getenv("SLURM_JOB_ID") != NULL))
        return 0;
    snprintf(uid, sizeof uid, "%u", (unsigned)getuid());
    argv[n++] = es_cfg.resolver;
    argv[n++] = "--policy";
    argv[n++] = es_cfg.policy;
    argv[n++] = "validate";
    argv[n++] = "--identity-only";           /* partition/account rules: checked at start */
    argv[n++] = "--user";
    argv[n++] = uid;
    /* values the user controls go as --opt=VALUE: a value starting with '-' stays a value */
    char a_chos[4096], a_req[sizeof es_option + 16];
    snprintf(a_chos, sizeof a_chos, "--chos-var=%s", chos ? chos : "");
    argv[n++] = a_chos;
    if (es_option_set) {
        snprintf(a_req, sizeof a_req, "--request=%s", es_option);
        argv[n++] = a_req;
    }
    argv[n] = NULL;
    if (es_run(argv, 0, &r) == 0) {
        if (r.err_len)                       /* a warning (on_error = default) */
            fputs(r.err, stderr);
        return 0;
    }
    char line[ES_MSG_MAX];
    fprintf(stderr, "%s\n", es_user_line(&r, line, sizeof line));
    return -1;
}
