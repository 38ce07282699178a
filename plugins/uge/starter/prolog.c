/* envsched-uge-prolog: the queue's `prolog root@.../uge-prolog PYTHON-PROLOG...`, run by
 * sge_shepherd as root before the job: prepare the job's pin, from the decision cache when an
 * earlier job's decision still holds for exactly these inputs (no Python), else by the resolver.
 *
 *   1. run_dir, policy, binds, the cache switch from the starter's configuration beside us
 *      (uge-starter.conf), as the starter and the epilog read it
 *   2. the job from our parent, the root sge_shepherd held by a pidfd (job.c, as the starter):
 *      its id, queue and owner from execd's `config`, the request (ENVSCHED_REQUEST, CHOS) from
 *      execd's `environment` there (a root prolog does not inherit the job's variables)
 *   3. what execd put in our environment must agree (JOB_ID, QUEUE, SGE_TASK_ID,
 *      SGE_JOB_SPOOL_DIR)
 *   4. the owner through NSS; the inputs line (../../common/es_prepare.c)
 *   5. the decision cache, else `envsched prepare` (es_prepare_pin); a refusal is the resolver's
 *      to log, and the starter, finding no pin, asks again and prints the one line to the job
 *
 * Anything this program does not read the way the Python prolog does (a spool file it doubts, an
 * environment that disagrees, a configuration it cannot load) goes to the Python prolog, whose
 * command line follows ours: it identifies the job again, refuses with its own line in the
 * admin log, or prepares. So every refusal keeps its one reason, and C never decides.
 *
 * It always exits 0 (another status puts the job, 100, or the queue in error).
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "starter.h"
#include "../../common/es_run.h"

/* hand the job to the Python prolog (our arguments), or give up: the starter fails closed */
static int python_prolog(char **argv, const char *why)
{
    char err[1024];

    syslog(LOG_INFO, "prolog: to the Python prolog: %s", why);
    es_exec_trusted(argv + 1, err, sizeof err);
    syslog(LOG_ERR, "prolog: %s (%s)", err, why);
    return 0;
}

/* execd's variables in our environment agree with the job we identified (the Python prolog's
 * rule 5; a mismatch is its to refuse and log) */
static int environment_agrees(const struct es_job *j, char *why, size_t whylen)
{
    const char *id = getenv("JOB_ID"), *queue = getenv("QUEUE"), *task = getenv("SGE_TASK_ID");
    const char *spool = getenv("SGE_JOB_SPOOL_DIR");
    struct stat there;

    if ((id && strcmp(id, j->id) != 0) || (queue && strcmp(queue, j->queue) != 0) ||
        (task && strcmp(task, "undefined") != 0 && strcmp(task, j->task) != 0)) {
        snprintf(why, whylen, "JOB_ID, QUEUE or SGE_TASK_ID differ from the job's configuration");
        return 0;
    }
    if (spool && (stat(spool, &there) != 0 || there.st_dev != j->spool_dev || there.st_ino != j->spool_ino)) {
        snprintf(why, whylen, "SGE_JOB_SPOOL_DIR is not the job directory");
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct es_conf conf;
    struct es_job job;
    struct es_prepare p;
    char err[2048], inputs[1024], jobstep[80], shim[ES_SHIM_MAX];
    int by_cache = 0;

    (void)argc;                         /* argv ends with NULL: python_prolog gets argv + 1 */
    openlog("envsched-uge-prolog", LOG_PID, LOG_DAEMON);
    if (getuid() != 0 || geteuid() != 0) {
        fprintf(stderr, ES_PREFIX "the prolog runs as root (root@ in the queue's prolog)\n");
        return 0;
    }
    /* 1, 2 */
    if (es_conf_load(&conf, "uge-starter.conf", err, sizeof err) != 0 ||
        es_job_identify_with_request(&job, err, sizeof err) != 0)
        return python_prolog(argv, err);
    if (job.request_read != 1)
        return python_prolog(argv, "the job's environment file is left to the Python prolog");
    /* 3 */
    if (!environment_agrees(&job, err, sizeof err))
        return python_prolog(argv, err);
    /* 4 */
    struct passwd *pw = job.owner[0] ? getpwnam(job.owner) : NULL;
    if (pw == NULL)
        return python_prolog(argv, "the job's owner is unknown to this node");
    es_job_prepare(&conf, &job, jobstep, sizeof jobstep, &p);
    p.uid = pw->pw_uid;
    p.request = job.request;
    p.chos = job.chos;
    if (es_prepare_inputs(&p, inputs, sizeof inputs) != 0)
        return python_prolog(argv, "the job's request does not fit one inputs line");
    p.inputs = inputs;
    /* 5 */
    int rc = es_prepare_pin(&p, shim, sizeof shim, &by_cache, err, sizeof err);
    if (!by_cache)
        syslog(LOG_INFO, "prolog: job %s: decision cache: %s", jobstep, p.miss);
    if (rc != 0)
        syslog(LOG_INFO, "prolog: job %s: not prepared (exit %d): %s", jobstep, rc, err);
    return 0;
}
