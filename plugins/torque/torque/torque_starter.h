/* envsched's Torque job starter (stage 2, torque-starter-core) and its pieces.
 *
 * Reuses the Grid Engine starter's configuration reader (conf.c: `<dir>/torque-starter.conf`,
 * root-owned like the program) and environment operations (envops.c), compiled from
 * plugins/uge/starter; see core.c for the sequence.
 */
#ifndef ES_TORQUE_STARTER_H
#define ES_TORQUE_STARTER_H

#include <sys/types.h>

#include "starter.h"            /* plugins/uge/starter: es_conf, es_conf_load, es_env_apply_shim */

#define ES_TORQUE_CONF "torque-starter.conf"
#define ES_TORQUE_KEY_PREFIX "torque-"
#define ES_TORQUE_INPUTS_MAX 1024

/* the job, from the environment pbs_mom built (see core.c on why it is trusted) */
struct es_tjob {
    char id[64];                 /* PBS_JOBID                                    */
    char key[96];                /* torque-<PBS_JOBID>                           */
    char user[64];               /* USER                                         */
    uid_t uid;
    gid_t gid;
    char home[4096];
    char inputs[ES_TORQUE_INPUTS_MAX];   /* uid=..\tchos=..\tqueue=.. (the prologue writes the same) */
};

/* tpin.c: open the job's pin (prepared by the prologue or by the resolver now) */
struct es_tpin {
    int dirfd;
    int has_view;
    char key[96];
    char shim[ES_SHIM_MAX];
};
int es_tpin_open(const struct es_conf *c, const struct es_tjob *j, char **jobenv, struct es_tpin *p,
                 int *ran_resolver, char *err, size_t errlen);

/* jobenv.c: the job's environment, handed over by stage 1 through a descriptor */
char **es_jobenv_read(int fd);
const char *es_jobenv_get(char **env, const char *name);

#endif
