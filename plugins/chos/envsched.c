/* `envsched`: the admins' command and the resolver every shim runs. This front runs root's
 * `envsched [--policy P] exec --user U --request NAME [--] COMMAND...` without starting Python
 * when root's run cache (~root/.cache/envsched/exec, src/envsched/runcache.py) holds the plan the
 * Python command made for exactly this request, every input of it unchanged; everything else (every
 * other command, every other option, any doubt) is the Python command's (`PYTHON -I -m
 * envsched.cli.envsched ARGS...`), which decides and writes the entry for next time.
 *
 * Root applies only what root wrote: an entry is used when it is a regular file of root's, mode
 * 0600, one link, in root's own cache, and every input it records is unchanged (the policy file's
 * stat and the owners and modes of the directories above it, as when the Python command checked
 * them; the user's passwd entry and groups; the tree's stat, top directories and stamps). The view
 * is built as view.py builds it (../common/es_view.c); the user's groups, gid and uid are then
 * taken for good before anything of theirs is touched. A hit is logged to syslog and to the
 * policy's log_file, as the resolver logs its decision, with by=cache. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <stdio.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "../common/es_release.h"
#include "../common/es_trust.h"
#include "front.h"

#define DEFAULT_POLICY "/etc/envsched/policy.toml"    /* policy/model.py DEFAULT_POLICY_PATH */
#define HEADER "envsched-exec 1"                      /* runcache.py EXEC_HEADER */

/* --opt VALUE or --opt=VALUE at argv[*i]: the value (and *i past it), else NULL */
static const char *option(char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[(*i)++] + n + 1;
    if (argv[*i][n] == '\0' && argv[*i + 1]) {
        *i += 2;
        return argv[*i - 1];
    }
    return NULL;
}

/* identity.py lookup_user: all digits is a uid (es_parse_uid: one that fits, else none), else a name */
static int target_uid(const char *who, uid_t *uid)
{
    struct passwd *pw;
    if (who[0] && strspn(who, "0123456789") == strlen(who)) {
        long v = es_parse_uid(who);
        if (v < 0)
            return -1;
        *uid = (uid_t)v;
        return 0;
    }
    if ((pw = getpwnam(who)) == NULL)
        return -1;
    *uid = pw->pw_uid;
    return 0;
}

int main(int argc, char **argv)
{
    static struct es_user u;
    static struct es_front_entry e;
    char inputs[PATH_MAX + 1024], path[PATH_MAX + 64], name[17], why[512], line[PATH_MAX + 512];
    const char *policy = NULL, *user = NULL, *request = NULL, *chos = getenv("CHOS"), *v;
    struct passwd *root;
    uid_t uid;
    int i = 1;

    (void)argc;
    if (getuid() != 0 || geteuid() != 0)
        es_front_python(argv, "envsched", NULL);
    if (argv[i] && !strcmp(argv[i], "--policy") && argv[i + 1]) {
        policy = argv[i + 1];
        i += 2;
    }
    if (!argv[i] || strcmp(argv[i], "exec"))
        es_front_python(argv, "envsched", NULL);
    for (i++; argv[i] && argv[i][0] == '-' && strcmp(argv[i], "--");) {
        if ((v = option(argv, &i, "--user")) && !user)
            user = v;
        else if ((v = option(argv, &i, "--request")) && !request)
            request = v;
        else
            es_front_python(argv, "envsched", "an option the cache does not key on");
    }
    char **command = argv + i;
    if (*command && !strcmp(*command, "--"))
        command++;
    if (!user || !request || !request[0] || !*command)
        es_front_python(argv, "envsched", "not the form the cache serves");
    if (policy == NULL)                               /* as root: never from the environment */
        policy = DEFAULT_POLICY;
    if (policy[0] != '/' || strpbrk(policy, "\t\n\r") || strpbrk(request, "\t\n\r") ||
        (chos && strpbrk(chos, "\t\n\r")))
        es_front_python(argv, "envsched", "a value the cache does not key on");
    if (getenv("ENVSCHED_NO_RUN_CACHE"))
        es_front_python(argv, "envsched", "ENVSCHED_NO_RUN_CACHE");
    if (target_uid(user, &uid) != 0 || es_user_lookup(uid, &u) != 0 || (root = getpwuid(0)) == NULL)
        es_front_python(argv, "envsched", "user lookup");
    /* the entry: root's, for exactly these inputs (runcache.py exec_inputs) */
    snprintf(inputs, sizeof inputs, "uid=%u\trequest=%s\tchos=%s\tpolicy=%s", (unsigned)u.uid, request,
             chos ? chos : "", policy);
    es_cache_name(inputs, name);
    snprintf(path, sizeof path, "%s/.cache/envsched/exec/%s", root->pw_dir, name);
    if (es_front_entry(path, 0, HEADER, inputs, &u, &e, why, sizeof why) != 0)
        es_front_python(argv, "envsched", why);
    /* the admin log's line, as the resolver's (audit.py), with by=cache */
    snprintf(line, sizeof line, "event=decided user=%s env=%s source=option path=%s by=cache", u.name, e.env,
             e.plan.source);
    openlog("envsched", LOG_PID, LOG_DAEMON);
    syslog(LOG_INFO, "%s", line);
    closelog();
    es_admin_log(e.log_file, line);
    es_front_enter(&e, command, 0, &u);
}
