/* envsched-uge-epilog: the queue's `epilog root@.../uge-epilog`, run by sge_shepherd as root
 * after the job, also after qdel: release the job's pin (what `envsched release` does, without
 * starting Python for every job).
 *
 *   1. the job from our parent, the root sge_shepherd held by a pidfd (its cwd names the job, and
 *      the config execd wrote there must agree), as the starter does (job.c)
 *   2. run_dir and log_file from the starter's configuration beside us (uge-starter.conf)
 *   3. detach the pinned namespace (the view dies with its last process), remove the pin; a pin
 *      whose environment has a node epilog (its hooks.json) or isolation namespaces (init, ipc,
 *      uts) is released by the resolver instead, which runs that hook (`envsched release`,
 *      nodehooks.py) and kills the PID namespace's init (isolation.py)
 *   4. one line to the admin log (log_file, same format as the resolver's) and to syslog
 *
 * It always exits 0: a failing epilog would put the whole queue in error. A pin it could not
 * release is collected by the next prepare on this host or by `envsched gc`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "starter.h"
#include "../../common/es_run.h"

/* a pin with one of these is released by the resolver (`envsched release`) */
static const char *const resolver_files[] = {"hooks.json", "init", "ipc", "uts", NULL};
static const char *const pin_files[] = {"plan.json", "meta.json", "shim", "inputs", "userns", "hooks.json",
                                        "hooks.released", NULL};

static void admin_log(const struct es_conf *c, const char *line)
{
    char stamp[64], text[PATH_MAX + 1200];
    time_t now = time(NULL);
    struct tm tm;

    syslog(LOG_INFO, "%s", line);
    if (!c->log_file[0])
        return;
    int fd = open(c->log_file, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_uid == 0) {
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z", localtime_r(&now, &tm));
        int n = snprintf(text, sizeof text, "%s envsched[%d]: %s\n", stamp, (int)getpid(), line);
        if (n > 0 && write(fd, text, (size_t)n) < 0) {
            /* syslog has it */
        }
    }
    close(fd);
}

int main(void)
{
    struct es_conf conf;
    struct es_job job;
    char err[2048], path[PATH_MAX + 256], line[PATH_MAX + 1024];

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
    snprintf(path, sizeof path, "%s/%s", conf.run_dir, job.key);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;                               /* nothing pinned (or released already) */
    int resolver = 0;
    for (const char *const *f = resolver_files; *f && !resolver; f++) {
        snprintf(path, sizeof path, "%s/%s/%s", conf.run_dir, job.key, *f);
        resolver = lstat(path, &st) == 0;
    }
    if (resolver) {
        /* node hooks, isolation namespaces: the resolver releases the pin, runs the environment's
         * node epilog, kills the PID namespace's init and unmounts the namespaces */
        char *argv[] = {conf.resolver, "--policy", conf.policy, "release", "--key", job.key, "--quiet", NULL};
        struct es_run r;
        if (es_run(argv, 0, &r) != 0) {
            snprintf(line, sizeof line, "event=failed step=release job=%s.%s key=%s reason=\"resolver exit %d\"",
                     job.id, job.task, job.key, r.status);
            admin_log(&conf, line);
        }
        return 0;
    }
    snprintf(path, sizeof path, "%s/%s/mnt", conf.run_dir, job.key);
    if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
        snprintf(line, sizeof line, "event=failed step=release job=%s.%s key=%s reason=\"umount2 %s: %s\"",
                 job.id, job.task, job.key, path, strerror(errno));
        admin_log(&conf, line);
        return 0;
    }
    unlink(path);
    for (int i = 0; pin_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", conf.run_dir, job.key, pin_files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/%s", conf.run_dir, job.key);
    if (rmdir(path) == 0) {
        snprintf(line, sizeof line, "event=released key=%s", job.key);
        admin_log(&conf, line);
    }
    return 0;
}
