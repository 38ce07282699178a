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
 *
 * Pinned at submit (site.pin_at_submit): the check runs `validate --pin`, which prints the request
 * the job must carry to its nodes: NAME@sha256:<digest of NAME's version current now> when the job
 * named NAME itself and the site pins, else the request unchanged (see carry_pin below).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envsched_spank.h"
#include "../common/es_cache.h"
#include "../common/es_submit.h"

static void refuse(const char *line, int code)
{
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    exit(code);
}

/* Slurm's own carrier of a SPANK option to slurmstepd (Slurm 22.05 src/common/plugstack.c):
 * SPANK_OPTION_ENV_PREFIX "_SLURM_SPANK_OPTION_" + plugin name + "_" + option name. */
#define ES_OPTION_ENV "_SLURM_SPANK_OPTION_envsched_chos"

/* The resolver's answer is the job's own request with a version added ("NAME" -> "NAME@sha256:..."),
 * or nothing to carry. Anything else (another name: a fallback to the site default, a decision from
 * ~/.chos or the defaults) is not carried: the node decides those, as without pinning. */
static int is_pinned_form(const char *request, const char *pinned)
{
    size_t n = strlen(request);

    return n > 0 && strchr(request, '@') == NULL && strncmp(pinned, request, n) == 0 &&
           strncmp(pinned + n, "@sha256:", 8) == 0 && strlen(pinned) < sizeof es_option &&
           strspn(pinned + n + 8, "0123456789abcdef") == strlen(pinned + n + 8);
}

/* Make the job carry the pinned request to its nodes, in the carrier the request came in.
 *
 * --chos=NAME: Slurm forwards a SPANK option to slurmstepd in two ways (Slurm 22.05):
 *   - the step launch message's option list, built from the option cache (step_launch.c ->
 *     plugstack.c spank_set_remote_options: p->optarg, which a plugin cannot change), for srun;
 *   - the environment variable _SLURM_SPANK_OPTION_envsched_chos, which spank_init_post_opt()
 *     (plugstack.c _spank_stack_set_remote_options_env) puts in the client's environ BEFORE it
 *     calls the plugins' init_post_opt (this code), and which the clients copy into the job's
 *     environment only afterwards: sbatch in _fill_job_desc_from_opts (env_array_merge of environ,
 *     after spank_init_post_opt in main), srun in _setup_one_job_env (env_array_merge(&job->env,
 *     environ) at launch), salloc's command inherits environ (so its steps carry it). slurmstepd
 *     reads the option list first and the environment second (plugstack.c spank_stack_post_opt:
 *     _spank_stack_get_remote_options, then _spank_stack_get_remote_options_env, each calling
 *     the option callback, request.c), so the environment's value is the one remote.c sees.
 *   We overwrite that variable, and its copy in the SPANK job environment (spank_job_control_setenv;
 *   spank_init_post_opt put NAME there too, dyn_spank_set_job_env): sbatch and salloc export that
 *   copy as SLURM_SPANK__SLURM_SPANK_OPTION_envsched_chos (sbatch.c/salloc.c _set_spank_env, after
 *   init_post_opt), and an srun inside the job turns it back into its --chos option
 *   (opt.c -> plugstack.c spank_process_env_options: "SLURM_SPANK_" + the option's env name), so the
 *   job's steps ask for the pinned version too, also on nodes that prepare their view only then.
 *   Not carried: sbatch --export=NONE or --export=<list> (only SLURM_* variables go, and the
 *   batch step then does not see --chos at all, pinned or not); srun --export=NONE (the step gets
 *   the option list: NAME unpinned, i.e. the version current when the job starts).
 * CHOS=NAME (no option): the job's CHOS variable itself, set here in the client's environ, which
 *   the job's environment is copied from in the same places.
 *
 * The user can forge either carrier (export _SLURM_SPANK_OPTION_envsched_chos=NAME@sha256:... or
 * CHOS=NAME@sha256:...). That is no way around the policy: it is the same as asking
 * --chos=NAME@sha256:... explicitly, which any user may, and the node checks the request, pinned or
 * not, against the policy again (remote.c: prepare) and refuses a version it does not have. */
static void carry_pin(spank_t sp, const char *chos, const char *pinned)
{
    if (es_option_set) {
        if (!is_pinned_form(es_option, pinned))
            return;
        if (setenv(ES_OPTION_ENV, pinned, 1) != 0)
            return;                          /* nothing carried: the node decides, unpinned */
        (void)spank_job_control_setenv(sp, ES_OPTION_ENV, pinned, 1);
        strcpy(es_option, pinned);           /* fits: is_pinned_form checked the length */
    } else if (chos != NULL && is_pinned_form(chos, pinned)) {
        (void)setenv("CHOS", pinned, 1);
    }
}

/* The submit-time cache (src/envsched/submitcache.py): the answer `envsched validate` gave this
 * user for the same request, every input of it unchanged (../common/es_cache.c's checks), as if
 * the resolver had just given it. It is the user's own file: it can only change what the user is
 * told now; the node decides again (remote.c). */
static int cached_answer(const char *chos, struct es_run *r)
{
    static struct es_user u;
    char inputs[PATH_MAX + 1024], path[PATH_MAX + 64], name[17], why[512];

    if (!es_cfg.cache || es_user_lookup(getuid(), &u) != 0)
        return 0;
    snprintf(inputs, sizeof inputs, "uid=%u\toption=%s\tchos=%s\tpolicy=%s", (unsigned)getuid(),
             es_option_set ? es_option : "", chos ? chos : "", es_cfg.policy);
    es_cache_name(inputs, name);
    snprintf(path, sizeof path, "%s/" ES_SUBMIT_DIR "/%s", u.home, name);
    struct es_submit_lookup l = {path, getuid(), inputs, &u, !(es_option_set || (chos && chos[0])), 0};
    return es_submit_cached(&l, r, why, sizeof why) == ES_CACHE_HIT;
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
    argv[n++] = "--pin";                     /* print the request to carry (site.pin_at_submit) */
    if (es_cfg.cache)
        argv[n++] = "--submit-cache";        /* keep the answer for next time (submitcache.py) */
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
    if (cached_answer(chos, &r) ? r.status == 0 : es_run(argv, 0, &r) == 0) {
        /* a warning (on_error = "default"): sbatch and salloc say it now; srun not, as its step
         * says it when it starts (remote.c), on the same stderr */
        if (r.err_len && spank_context() == S_CTX_ALLOCATOR)
            fputs(r.err, stderr);
        /* the first line of stdout: the request to carry */
        r.out[r.out_len < sizeof r.out ? r.out_len : sizeof r.out - 1] = '\0';
        r.out[strcspn(r.out, "\n")] = '\0';
        carry_pin(sp, chos, r.out);
        return 0;
    }
    char line[ES_MSG_MAX];
    refuse(es_user_line(&r, line, sizeof line), es_exit_code(r.status));
    return -1;                               /* not reached */
}
