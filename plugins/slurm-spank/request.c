/* The job's raw request: the --chos option on sbatch, salloc and srun.
 *
 * The callback never fails: a failed option callback makes Slurm add lines of its own to ours
 * ("Invalid --chos argument: ..."). A value that cannot be a name (empty, longer than the buffer) is
 * refused in one line (exit 64) by the submit-time check (local.c) or, for a step whose srun skips
 * that check, when the step starts (remote.c). */
#include <string.h>

#include "envsched_spank.h"

char es_option[256];
int es_option_set;
const char *es_option_error;

static int on_chos(int val, const char *optarg, int remote)
{
    (void)val, (void)remote;
    es_option_set = 0;
    es_option_error = NULL;
    if (optarg == NULL || optarg[0] == '\0') {
        es_option_error = ES_PREFIX "--chos needs an environment name (see `chos list`)";
        return 0;
    }
    if (strlen(optarg) >= sizeof es_option) {      /* never cut: a prefix could be another name */
        es_option_error = ES_PREFIX "--chos: no environment name is that long (see `chos list`)";
        return 0;
    }
    /* the value is only ever passed to the resolver as one argv element; it checks the grammar */
    strcpy(es_option, optarg);
    es_option_set = 1;
    return 0;
}

static struct spank_option chos_option = {
    "chos", "NAME", "run the job in environment NAME (see `chos list`)", 1, 0, on_chos,
};

int es_option_register(spank_t sp)
{
    spank_err_t rc = spank_option_register(sp, &chos_option);

    if (rc != ESPANK_SUCCESS) {
        slurm_error(ES_PREFIX "cannot register --chos: %s", spank_strerror(rc));
        return -1;
    }
    return 0;
}
