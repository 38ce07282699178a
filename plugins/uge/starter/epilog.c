/* envsched-uge-epilog: the queue's `epilog root@.../uge-epilog`, run by sge_shepherd as root
 * after the job, also after qdel: release the job's pin (what `envsched release` does, without
 * starting Python for every job).
 *
 *   1. the job from our parent, the root sge_shepherd held by a pidfd (its cwd names the job, and
 *      the config execd wrote there must agree), as the starter does (job.c)
 *   2. run_dir and log_file from the starter's configuration beside us (uge-starter.conf)
 *   3. detach the pinned namespace (the view dies with its last process), remove the pin
 *      (plugins/common/es_release.c, shared with the Slurm epilog); a pin whose environment has a
 *      node epilog (its hooks.json) or isolation namespaces (init, ipc, uts), or a node holding
 *      image mounts, is released by the resolver instead, which runs that hook (`envsched
 *      release`, nodehooks.py), kills the PID namespace's init (isolation.py) and lets idle
 *      images go (holders.py)
 *   4. one line to the admin log (log_file, same format as the resolver's) and to syslog
 *
 * It always exits 0: a failing epilog would put the whole queue in error. A pin it could not
 * release is collected by the next prepare on this host or by `envsched gc`.
 */
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

#include "starter.h"
#include "../../common/es_release.h"
#include "../../common/es_run.h"

static void admin_log(const struct es_conf *c, const char *line)
{
    syslog(LOG_INFO, "%s", line);
    es_admin_log(c->log_file, line);
}

int main(void)
{
    struct es_conf conf;
    struct es_job job;
    char err[2048], line[PATH_MAX + 2600];

    openlog("envsched-uge-epilog", LOG_PID, LOG_DAEMON);
    if (getuid() != 0 || geteuid() != 0) {
        fprintf(stderr, ES_PREFIX "the epilog runs as root (root@ in the queue's epilog)\n");
        return 0;
    }
    if (es_conf_load(&conf, "uge-starter.conf", err, sizeof err) != 0 ||
        es_job_identify(&job, err, sizeof err) != 0) {
        syslog(LOG_ERR, "epilog: %s", err);
        return 0;
    }
    int rc = es_release_logged(conf.run_dir, job.key, conf.log_file, "", err, sizeof err);
    if (rc == ES_RELEASE_RESOLVER) {
        /* node hooks, isolation namespaces, image mounts: the resolver releases the pin, runs the
         * environment's node epilog, kills the PID namespace's init, lets idle images go */
        char *argv[] = {conf.resolver, "--policy", conf.policy, "release", "--key", job.key, "--quiet", NULL};
        struct es_run r;
        if (es_run(argv, 0, &r) != 0) {
            snprintf(line, sizeof line, "event=failed step=release job=%s.%s key=%s reason=\"resolver exit %d\"",
                     job.id, job.task, job.key, r.status);
            admin_log(&conf, line);
        }
    } else if (rc == ES_RELEASE_FAILED) {
        snprintf(line, sizeof line, "event=failed step=release job=%s.%s key=%s reason=\"%s\"", job.id, job.task,
                 job.key, err);
        admin_log(&conf, line);
    } else if (rc == ES_RELEASED) {
        syslog(LOG_INFO, "event=released key=%s", job.key);
    }
    return 0;
}
