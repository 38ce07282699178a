/* Which job this is, and whose: nothing here comes from a value the job's user can set.
 *
 *   who       the real uid and gid, which pbs_mom set before it exec'd us (start_exec.c:
 *             become_the_user_sjr, for the batch shell in TMomFinalizeChild and for every TM
 *             task in start_process, whenever $job_starter_run_privileged is not true); the
 *             kernel keeps them, the user cannot choose them for a set-user-ID program.
 *   which     the job id, from the job's cgroup when pbs_mom has them (built with cgroups it
 *             puts the child into /torque/<jobid> before the exec: start_exec.c,
 *             trq_cg_add_process_to_all_cgroups; only root can create or enter those), else
 *             from PBS_JOBID. PBS_JOBID is the user's to set in a TM task (InitUserEnv adds the
 *             task's own environment, read from the TM request, last), so it is only a name to
 *             look up: the job must have a record in run_dir/.jobs, written by our prologue as
 *             root from pbs_mom's own arguments, and that record must name our real uid. The
 *             most a user gets by naming another id is another of their own jobs on this node,
 *             which Torque itself grants them: TM requests carry just the job id and its cookie
 *             (mom_comm.c tm_request: "verify the jobid is known and the cookie matches"), and
 *             both are in that job's environment, which its owner can read.
 *   queue, account   from the record (the prologue's arguments 6 and 7), never from PBS_QUEUE,
 *             which a TM task's environment replaces.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/es_trust.h"
#include "torque_starter.h"

#define RECORD_MAX 4096

int es_valid_jobid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 56 || !isdigit((unsigned char)id[0]))
        return 0;
    return strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_") == n;
}

int es_cgroup_jobid(const char *text, char *id, size_t idlen)
{
    int found = 0;

    /* lines "N:controllers:/path"; only a path starting at the hierarchy's root with /torque/
     * counts (a cgroup v2 subtree delegated to a user lives under /user.slice/...) */
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *end = strchr(l, '\n');
        if (c2 == NULL || (end && c2 > end))
            continue;
        const char *path = c2 + 1;
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len <= 8 || strncmp(path, "/torque/", 8) != 0)
            continue;
        size_t idl = strcspn(path + 8, "/\n");
        if (idl >= idlen || idl > len - 8)
            continue;
        char cand[128];
        snprintf(cand, sizeof cand, "%.*s", (int)idl, path + 8);
        if (!es_valid_jobid(cand))
            continue;
        if (found && strcmp(cand, id) != 0)
            return -1;
        snprintf(id, idlen, "%s", cand);
        found = 1;
    }
    return found;
}

int es_mom_starter_privileged(const char *mom_config, char *err, size_t errlen)
{
    char line[4096];
    int on = 0;

    if (es_trusted_path(mom_config, err, errlen) != 0)
        return -1;
    int fd = open(mom_config, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", mom_config, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    /* parse_config.c: "$name value" lines, the last one wins; setbool(): t/y/1/on true,
     * f/n/0/off false, anything else leaves the value as it was */
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        const char *name = "$job_starter_run_privileged";
        if (strncmp(p, name, strlen(name)) != 0 || !isspace((unsigned char)p[strlen(name)]))
            continue;
        p += strlen(name);
        p += strspn(p, " \t");
        if (strchr("tTyY1", p[0]) && p[0])
            on = 1;
        else if (strchr("fFnN0", p[0]) && p[0])
            on = 0;
        else if (strncasecmp(p, "on", 2) == 0)
            on = 1;
        else if (strncasecmp(p, "off", 3) == 0)
            on = 0;
    }
    fclose(f);
    return on;
}

static int read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* the record's value for `name` ("uid", "queue", ...), "" when absent */
static void record_value(const char *rec, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *l = rec; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, nl) == 0 && l[nl] == ' ') {
            snprintf(out, len, "%.*s", (int)strcspn(l + nl + 1, "\n"), l + nl + 1);
            return;
        }
}

/* run_dir/.jobs/<key>: root's, not writable by others, opened without following links */
static int read_record(const struct es_conf *c, const char *key, char *rec, size_t cap, char *err, size_t errlen)
{
    int dir = es_open_pin_dir(c->run_dir, ES_TORQUE_RECORDS, err, errlen);
    if (dir < 0)
        return errno == ENOENT ? 0 : -1;
    int fd = openat(dir, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(dir);
    if (fd < 0) {
        snprintf(err, errlen, "%s/%s/%s: %s", c->run_dir, ES_TORQUE_RECORDS, key, strerror(e));
        return e == ENOENT ? 0 : -1;
    }
    if (!es_root_only(fd, 0)) {
        close(fd);
        snprintf(err, errlen, "%s/%s/%s: not root's alone", c->run_dir, ES_TORQUE_RECORDS, key);
        return -1;
    }
    ssize_t n = read(fd, rec, cap - 1);
    close(fd);
    if (n < 0 || (size_t)n >= cap - 1) {
        snprintf(err, errlen, "%s/%s/%s: unreadable or longer than %zu bytes", c->run_dir, ES_TORQUE_RECORDS, key,
                 cap - 2);
        return -1;
    }
    rec[n] = '\0';
    return 1;
}

int es_tjob_identify(const struct es_conf *c, struct es_tjob *j, char *err, size_t errlen)
{
    char cg[8192], rec[RECORD_MAX], uid[32], why[PATH_MAX + 256];
    const char *chos = getenv("CHOS");

    /* who: the kernel's real ids */
    j->uid = getuid();
    j->gid = getgid();
    struct passwd *pw = getpwuid(j->uid);
    if (pw == NULL) {
        snprintf(err, errlen, "uid %u: no such user on this host", (unsigned)j->uid);
        return ENVSCHED_EXIT_NO_USER;
    }
    snprintf(j->user, sizeof j->user, "%.63s", pw->pw_name);
    snprintf(j->home, sizeof j->home, "%s", pw->pw_dir);
    /* which: the cgroup pbs_mom put us in, else PBS_JOBID */
    int found = read_file("/proc/self/cgroup", cg, sizeof cg) == 0 ? es_cgroup_jobid(cg, j->id, sizeof j->id) : 0;
    if (found < 0) {
        snprintf(err, errlen, "this process is in the cgroups of two Torque jobs");
        return ENVSCHED_EXIT_NOT_PERMITTED;
    }
    j->id_source = found ? "cgroup" : "PBS_JOBID";
    if (!found) {
        const char *id = getenv("PBS_JOBID");
        if (id == NULL) {
            snprintf(err, errlen, "not a Torque job (no PBS_JOBID, no Torque cgroup)");
            return ENVSCHED_EXIT_NOT_PERMITTED;
        }
        if (!es_valid_jobid(id)) {
            snprintf(err, errlen, "job id '%.80s': not a Torque job id", id);
            return ENVSCHED_EXIT_NOT_PERMITTED;
        }
        snprintf(j->id, sizeof j->id, "%s", id);
    }
    snprintf(j->key, sizeof j->key, ES_TORQUE_KEY_PREFIX "%s", j->id);
    /* the record our prologue wrote from pbs_mom's arguments must name this uid */
    int rc = read_record(c, j->key, rec, sizeof rec, why, sizeof why);
    if (rc < 0) {
        snprintf(err, errlen, "job %s: %s", j->id, why);
        return ENVSCHED_EXIT_NOT_PERMITTED;
    }
    if (rc == 0) {
        snprintf(err, errlen, "job %s has no record on this host (%s/%s/%s): it is not running here, or the "
                 "envsched prologue (prologue.parallel on sister nodes) did not run for it", j->id, c->run_dir,
                 ES_TORQUE_RECORDS, j->key);
        return ENVSCHED_EXIT_NOT_PERMITTED;
    }
    record_value(rec, "uid", uid, sizeof uid);
    char *end = NULL;
    long rec_uid = strtol(uid, &end, 10);
    if (!uid[0] || *end != '\0' || rec_uid < 0 || (uid_t)rec_uid != j->uid) {
        snprintf(err, errlen, "job %s is not %s's (uid %u) job", j->id, j->user, (unsigned)j->uid);
        return ENVSCHED_EXIT_NOT_PERMITTED;
    }
    record_value(rec, "queue", j->queue, sizeof j->queue);
    record_value(rec, "account", j->account, sizeof j->account);
    if (chos && strlen(chos) > 255) {
        snprintf(err, errlen, "the job's CHOS is longer than 255 characters");
        return ENVSCHED_EXIT_REFUSED;
    }
    /* the same text the prologue stores (plugins/torque/torque/envsched_torque.py: inputs()) */
    snprintf(j->inputs, sizeof j->inputs, "uid=%u\tchos=%s\tqueue=%s\taccount=%s", (unsigned)j->uid,
             chos ? chos : "", j->queue, j->account);
    return 0;
}
