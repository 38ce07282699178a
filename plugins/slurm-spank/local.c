/* Submit time, as the user (srun/sbatch/salloc): refuse a bad request before it is queued.
 *
 * A refusal is one line on stderr and the client exits with the resolver's code (77: refused by
 * the site's rules; 64, 78, 70 ...), here, in init_post_opt. Returning an error instead would make
 * Slurm add two lines of its own and exit 1 (Slurm 22.05: plugstack.c _do_call_stack "spank:
 * required plugin %s: %s() failed with rc=%d"; sbatch.c/salloc.c "Plugin stack post-option
 * processing failed", srun's opt.c the same with a period), and no other callback of these clients
 * fails more quietly. Exiting from the callback is safe at this point: nothing is submitted or
 * allocated yet, and exit() runs the atexit handlers the clients registered (spank_fini: the other
 * plugins' exit callbacks), as the clients' own exit(error_exit) would.
 *
 * A fallback warning (on_error = "default") is printed here by sbatch and salloc only: a step says
 * it when it starts, once per node (remote.c), so srun would print it twice.
 *
 * Steps inside an existing allocation (srun with SLURM_JOB_ID set) are not checked here: the
 * job's environment was checked when it was submitted, and a step asking for another one is
 * refused by slurmstepd with the same one-line message (no resolver start per srun).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "envsched_spank.h"

static void refuse(const char *line, int code)
{
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    exit(code);
}

int es_local_check(spank_t sp)
{
    char uid[16], *chos = getenv("CHOS");
    char *argv[16];
    int n = 0;
    struct es_run r;

    (void)sp;
    if (!es_cfg.validate || (spank_context() == S_CTX_LOCAL && getenv("SLURM_JOB_ID") != NULL))
        return 0;
    if (es_option_error)
        refuse(es_option_error, ENVSCHED_EXIT_USAGE);
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
        /* a warning (on_error = "default"): sbatch and salloc say it now; srun not, as its step
         * says it when it starts (remote.c), on the same stderr */
        if (r.err_len && spank_context() == S_CTX_ALLOCATOR)
            fputs(r.err, stderr);
        return 0;
    }
    char line[ES_MSG_MAX];
    refuse(es_user_line(&r, line, sizeof line), es_exit_code(r.status));
    return -1;                               /* not reached */
}
