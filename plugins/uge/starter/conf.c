/* The starter's configuration: the file next to the program, `<program>.conf`, e.g.
 * /usr/local/libexec/envsched/uge-starter.conf. A set-user-ID program cannot take its
 * settings from its arguments or environment (the user controls both), and Grid Engine
 * starts `starter_method` without arguments, so the configuration sits beside it and must be
 * as trusted as the program: owned by root and not writable by group or others, and so every
 * directory above it.
 *
 *   policy=/etc/envsched/policy.toml
 *   resolver=/usr/local/bin/envsched
 *   run_dir=/run/envsched
 *   bind=/var/spool/gridengine          (repeatable; host paths for every view)
 *   host_tools=/var/lib/envsched/uge-tools   (optional; `envsched site-config host-tools`)
 *   log_file=/var/log/envsched.log      (optional; the policy's site.log_file, for the epilog)
 *   cache=1|0                           (the decision cache and shared views; default 1)
 *   root_jobs=refuse|allow              (Torque starter: may root's own jobs run; default refuse)
 *   mom_config=/var/spool/torque/mom_priv/config   (Torque starter, required with root_jobs=allow)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/es_trust.h"
#include "starter.h"

static int set(char *dst, size_t len, const char *key, const char *value, char *err, size_t errlen)
{
    if (value[0] != '/' || strlen(value) >= len) {
        snprintf(err, errlen, "%s=%s: expected an absolute path", key, value);
        return -1;
    }
    snprintf(dst, len, "%s", value);
    return 0;
}

/* fgets, but a line that does not fit is an error rather than two lines (the tail of a long comment
 * must not be read as a setting): 1 a line, 0 the end, -1 too long */
static int read_line(char *line, size_t len, FILE *f)
{
    line[len - 1] = '\n';                  /* fgets puts its NUL there only when the line fills line */
    if (fgets(line, (int)len, f) == NULL)
        return 0;
    return line[len - 1] == '\0' && line[len - 2] != '\n' ? -1 : 1;
}

int es_conf_load(struct es_conf *c, const char *name, char *err, size_t errlen)
{
    char exe[PATH_MAX], path[PATH_MAX + 64], line[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    memset(c, 0, sizeof *c);
    snprintf(c->run_dir, sizeof c->run_dir, "/run/envsched");
    c->cache = 1;
    if (n <= 0) {
        snprintf(err, errlen, "readlink /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    if (name != NULL && strrchr(exe, '/') != NULL)          /* a sibling's configuration */
        snprintf(path, sizeof path, "%.*s/%s", (int)(strrchr(exe, '/') - exe), exe, name);
    else
        snprintf(path, sizeof path, "%s.conf", exe);
    if (es_trusted_path(path, err, errlen) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rc = 0, lineno = 0, got;
    while (rc == 0 && (got = read_line(line, sizeof line, f)) != 0) {
        lineno++;
        if (got < 0) {
            snprintf(err, errlen, "%s:%d: longer than %d bytes", path, lineno, (int)sizeof line - 2);
            rc = -1;
            break;
        }
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected key=value", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        const char *key = line, *value = eq + 1;
        if (strcmp(key, "policy") == 0)
            rc = set(c->policy, sizeof c->policy, key, value, err, errlen);
        else if (strcmp(key, "resolver") == 0)
            rc = set(c->resolver, sizeof c->resolver, key, value, err, errlen);
        else if (strcmp(key, "run_dir") == 0)
            rc = set(c->run_dir, sizeof c->run_dir, key, value, err, errlen);
        else if (strcmp(key, "log_file") == 0)
            rc = set(c->log_file, sizeof c->log_file, key, value, err, errlen);
        else if (strcmp(key, "host_tools") == 0)
            rc = set(c->host_tools, sizeof c->host_tools, key, value, err, errlen);
        else if (strcmp(key, "mom_config") == 0)
            rc = set(c->mom_config, sizeof c->mom_config, key, value, err, errlen);
        else if (strcmp(key, "cache") == 0 && (strcmp(value, "0") == 0 || strcmp(value, "1") == 0))
            c->cache = value[0] == '1';
        else if (strcmp(key, "root_jobs") == 0 && (strcmp(value, "allow") == 0 || strcmp(value, "refuse") == 0))
            c->root_jobs = strcmp(value, "allow") == 0;
        else if (strcmp(key, "bind") == 0 && c->nbinds < ES_MAX_BINDS)
            rc = set(c->binds[c->nbinds++], PATH_MAX, key, value, err, errlen);
        else {
            snprintf(err, errlen, "%s:%d: unknown key '%s' (or more than %d binds)", path, lineno, key,
                     ES_MAX_BINDS);
            rc = -1;
        }
        if (rc != 0 && strncmp(err, path, strlen(path)) != 0) {   /* parsers report path:line */
            char why[PATH_MAX + 64];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
        }
    }
    fclose(f);
    if (rc == 0 && (!c->policy[0] || !c->resolver[0])) {
        snprintf(err, errlen, "%s: policy= and resolver= are required", path);
        rc = -1;
    }
    for (int i = 0; i < c->nbinds; i++)
        c->bind_list[i] = c->binds[i];
    return rc;
}

void es_conf_prepare(const struct es_conf *c, struct es_prepare *p)
{
    memset(p, 0, sizeof *p);
    p->resolver = c->resolver;
    p->policy = c->policy;
    p->run_dir = c->run_dir;
    p->log_file = c->log_file;
    p->binds = c->bind_list;
    p->nbinds = c->nbinds;
    p->host_tools = c->host_tools;
    p->cache = c->cache;
}

void es_job_prepare(const struct es_conf *c, const struct es_job *j, char *jobstep, size_t len,
                    struct es_prepare *p)
{
    es_conf_prepare(c, p);
    snprintf(jobstep, len, "%s.%s", j->id, j->task);
    p->scheduler = "uge";
    p->key = j->key;
    p->job = jobstep;
    p->owner = j->shepherd;
    p->partition = j->queue;
}
