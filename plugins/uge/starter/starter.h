/* envsched's Grid Engine job starter (queue_conf(5) `starter_method`) and epilog: shared
 * declarations.
 *
 * Installed set-user-ID root. It decides nothing: it joins the view the root prolog prepared
 * for this job (or has the resolver prepare it, for jobs that ran no prolog: qrsh, PE slave
 * tasks), drops every privilege and execs the job. See starter.c for the sequence and
 * docs/admin.md, "Grid Engine".
 */
#ifndef ES_STARTER_H
#define ES_STARTER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "../../common/envsched_exit.h"
#include "../../common/es_prepare.h"
#include "../../common/es_run.h"

#define ES_MAX_BINDS 16
#define ES_SHIM_MAX 16384

/* conf.c: <this program's path>.conf, root-owned, like the policy */
struct es_conf {
    char policy[PATH_MAX];              /* policy=   the site policy                       */
    char resolver[PATH_MAX];            /* resolver= the envsched command (absolute path)  */
    char run_dir[PATH_MAX];             /* run_dir=  where the resolver keeps pins         */
    char binds[ES_MAX_BINDS][PATH_MAX]; /* bind=     extra host paths for every view       */
    int nbinds;
    char log_file[PATH_MAX];            /* log_file= the admin log (the epilog's lines)       */
    char host_tools[PATH_MAX];          /* host_tools= wrappers of the host's clients: bound, */
                                        /*             and <dir>/bin first in the job's PATH  */
    int root_jobs;                      /* root_jobs=allow (Torque): uid 0 may be a job's owner */
    char mom_config[PATH_MAX];          /* mom_config= pbs_mom's config (Torque, root_jobs)     */
    int cache;                          /* cache=0|1 the decision cache and shared views (1)    */
    const char *bind_list[ES_MAX_BINDS];/* binds, as es_prepare takes them                     */
};
/* name: NULL for "<this program>.conf", else a file of that name in this program's directory */
int es_conf_load(struct es_conf *c, const char *name, char *err, size_t errlen);
/* the configuration's part of a prepare (../../common/es_prepare.h); the job's part is zeroed */
void es_conf_prepare(const struct es_conf *c, struct es_prepare *p);
struct es_job;
/* es_conf_prepare, then the fields the starter and the prolog fill alike from the job: the pin key,
 * the job ("ID.TASK", written into jobstep), the shepherd as the pin's owner, the queue as the
 * policy's partition. The uid and the request (request, chos) are the caller's to set: the
 * starter's real uid and the job's variables, the prolog's owner and execd's environment file. */
void es_job_prepare(const struct es_conf *c, const struct es_job *j, char *jobstep, size_t len,
                    struct es_prepare *p);

/* job.c: which job we start, from the sge_shepherd that started us (not from the environment) */
#define ES_JOB_BINARY   1                /* handle_as_binary=1 */
#define ES_JOB_NO_SHELL 2                /* no_shell=1         */
#define ES_CONFIG_MAX   (1 << 20)        /* the job's config file: larger is refused            */
struct es_job {
    char id[32];                        /* JOB_ID                                          */
    char task[32];                      /* array task id, "1" for a job without tasks      */
    char key[96];                       /* the pin key: uge-<id>.<task>                    */
    char queue[256];                    /* queue= of the job's config: the policy's partition */
    char owner[256];                    /* job_owner= of the job's config (the prolog's user)  */
    int kind;                           /* ES_JOB_* from the job's config                  */
    pid_t shepherd;
    int via_qrsh;                       /* started by qrsh_starter: qrsh CMD, qrsh -inherit  */
    dev_t spool_dev;                    /* the job's directory (the shepherd's cwd)          */
    ino_t spool_ino;
    /* es_job_identify_with_request: execd's copy of the job's environment (the prolog's) */
    int request_read;                   /* 1: read; 0: left to the Python prolog (job.c)    */
    char request[256];                  /* ENVSCHED_REQUEST                                 */
    char chos[256];                     /* CHOS                                             */
};
/* the job, its queue and how to start it: from our parent (a root sge_shepherd, held by a pidfd)
 * and the config file execd wrote into the shepherd's working directory */
int es_job_identify(struct es_job *j, char *err, size_t errlen);
/* the same, and (for the root prolog) the request from execd's `environment` file there */
int es_job_identify_with_request(struct es_job *j, char *err, size_t errlen);
/* ENVSCHED_REQUEST and CHOS from the text of execd's `environment` (text[len] must be NUL) into
 * j->request and j->chos, as envsched_uge.py's parse_environment reads them. 1: read; 0: a case
 * left to the Python prolog (a line the shepherd's 10000-byte buffer would cut, a variable set
 * twice with different values, an escaped line break or a NUL in either value, a value longer
 * than 255 bytes; both values are then empty). Compared with Python by tests/fuzz. */
int es_spool_request(const char *text, size_t len, struct es_job *j);
/* argv to exec for the job, following the shepherd's own rules (script, binary, qrsh) */
char **es_job_argv(int argc, char **argv, int kind, const char **path);

/* pin.c: the job's pin under run_dir/<key>, prepared by the prolog or by us through the resolver */
struct es_pin {
    int dirfd;
    int has_view;                       /* "pin -" means the host OS: nothing to join      */
    char shim[ES_SHIM_MAX];
    char home[PATH_MAX];
};
int es_pin_open(const struct es_conf *c, const struct es_job *j, struct es_pin *p,
                char *err, size_t errlen);

/* envops.c */
int es_env_saved(void);                          /* copy /proc/self/environ (call as root)   */
void es_env_restore(void);                       /* put back what glibc dropped for setuid   */
int es_env_apply_shim(const char *shim);         /* the plan's env set/prepend/append/unset  */
int es_env_prepend_path(const char *tools_dir);  /* <tools_dir>/bin first in PATH            */

#define ES_PREFIX_STARTER "envsched: "
#endif
