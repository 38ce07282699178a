/* The job's raw request: the --chos option on sbatch, salloc and srun. */
#include <string.h>

#include "envsched_spank.h"

char es_option[128];
int es_option_set;

static int on_chos(int val, const char *optarg, int remote)
{
    (void)val, (void)remote;
    if (optarg == NULL || optarg[0] == '\0' || strlen(optarg) >= sizeof es_option) {
        slurm_error(ES_PREFIX "--chos needs an environment name (at most %zu characters)",
                    sizeof es_option - 1);
        return -1;
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
