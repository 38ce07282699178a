/* envsched's Torque job starter (torque-starter, set-user-ID root) and its pieces.
 *
 * Reuses the Grid Engine starter's configuration reader (conf.c: `<dir>/torque-starter.conf`,
 * root-owned like the program) and environment handling (envops.c), compiled from
 * plugins/uge/starter; starter.c has the sequence.
 */
#ifndef ES_TORQUE_STARTER_H
#define ES_TORQUE_STARTER_H

#include <sys/types.h>

#include "starter.h"            /* plugins/uge/starter: es_conf, es_conf_load, es_env_* */

#define ES_TORQUE_CONF "torque-starter.conf"
#define ES_TORQUE_KEY_PREFIX "torque-"
#define ES_TORQUE_RECORDS ".jobs"          /* run_dir/.jobs/torque-<jobid>: the prologue's record */
#define ES_TORQUE_INPUTS_MAX 1024

/* the job: who from the kernel, which from the cgroup or PBS_JOBID checked against the record,
 * queue and account from the record (job.c) */
struct es_tjob {
    char id[64];                 /* the Torque job id                                        */
    char key[96];                /* torque-<id>                                              */
    const char *id_source;       /* "cgroup" or "PBS_JOBID"                                  */
    char user[64];
    uid_t uid;                   /* the real uid pbs_mom gave us (become_the_user)           */
    gid_t gid;                   /* the real gid likewise                                    */
    char home[4096];
    char queue[256];             /* from the record: pbs_mom's prologue argument             */
    char account[256];           /* likewise                                                 */
    char inputs[ES_TORQUE_INPUTS_MAX];   /* uid=..\tchos=..\tqueue=..\taccount=.. (the prologue writes the same) */
};
/* 0, or an exit code with the user's line in err */
int es_tjob_identify(const struct es_conf *c, struct es_tjob *j, char *err, size_t errlen);
/* `$job_starter_run_privileged` in pbs_mom's configuration file: 1 on, 0 off, -1 unreadable */
int es_mom_starter_privileged(const char *mom_config, char *err, size_t errlen);
/* the job id in a /proc/PID/cgroup text: a hierarchy path /torque/<jobid>[/...] (pbs_mom's
 * cgroups); 1 found, 0 none, -1 two different ones */
int es_cgroup_jobid(const char *cgroup_text, char *id, size_t idlen);
int es_valid_jobid(const char *id);

/* tpin.c: open the job's pin (prepared by the prologue or by the resolver now) */
struct es_tpin {
    int dirfd;
    int has_view;
    char key[96];
    char shim[ES_SHIM_MAX];
};
int es_tpin_open(const struct es_conf *c, const struct es_tjob *j, const char *chos, struct es_tpin *p,
                 int *ran_resolver, char *err, size_t errlen);

/* the submit filter's stamps in a job script (envsched_torque.py STAMP, PIN_STAMP): written by
 * qsubfilter.c, read by pelog.c's prologue */
#define STAMP "#ENVSCHED chos="
#define PIN_STAMP "#ENVSCHED pin="

/* pelog.c: envsched_torque.py's carried() (the prologue's and the submit filter's) */
const char *es_torque_carried(const char *request, const char *pinned);
/* qsubfilter.c: `torque-pelog submit-filter PYTHON-FILTER... -- QSUB-ARGS...` (as the user); its exit code */
int es_torque_submit_filter(char **argv, int argc);

#endif
