/* `chos`: the user's command. This front runs a user's `chos run NAME [--] COMMAND...` without
 * starting Python when their run cache (~/.cache/envsched/run, src/envsched/runcache.py) holds the
 * plan the Python command made for exactly this request, every input of it unchanged; everything
 * else, and any doubt, is the Python command's (`PYTHON -I -m envsched.cli.chos ARGS...`), which
 * decides and writes the entry for next time.
 *
 * An ordinary program of the user's, not set-user-ID: the entry is the user's own file and the
 * view is built in a user namespace of the user's, so an entry the user edits gives them nothing
 * unshare(1) would not. It is still held to the resolver's answer: every input the entry records
 * is checked as the node's decision cache is (the policy file's stat, the directories above it,
 * the user and their groups, the tree's stat, top directories and stamps), so a policy edit, a
 * group removed or a tree changed sends the next run to Python, which decides again. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "front.h"

#define DEFAULT_POLICY "/etc/envsched/policy.toml"    /* policy/model.py DEFAULT_POLICY_PATH */
#define HEADER "envsched-run 1"                       /* runcache.py RUN_HEADER */

int main(int argc, char **argv)
{
    static struct es_user u;
    static struct es_front_entry e;
    char inputs[PATH_MAX + 1024], path[PATH_MAX + 64], name[17], why[512];
    const char *policy = NULL, *chos = getenv("CHOS"), *env_policy = getenv("ENVSCHED_POLICY");
    uid_t uid = getuid();
    int i = 1;

    (void)argc;
    /* the fast path is a user's own `chos [--policy P] run NAME [--] COMMAND...`, nothing else */
    if (uid == 0 || geteuid() != uid || getegid() != getgid())
        es_front_python(argv, "chos", NULL);
    if (argv[i] && !strcmp(argv[i], "--policy") && argv[i + 1]) {
        policy = argv[i + 1];
        i += 2;
    }
    if (!argv[i] || strcmp(argv[i], "run") || !argv[i + 1] || argv[i + 1][0] == '-')
        es_front_python(argv, "chos", NULL);
    const char *env_name = argv[i + 1];
    char **command = argv + i + 2;
    if (*command && !strcmp(*command, "--"))
        command++;
    if (!*command)
        es_front_python(argv, "chos", "no command");
    if (policy == NULL)                               /* policy/load.py default_policy_path, as a user */
        policy = env_policy && env_policy[0] ? env_policy : DEFAULT_POLICY;
    if (policy[0] != '/' || strpbrk(policy, "\t\n\r") || strpbrk(env_name, "\t\n\r") ||
        (chos && strpbrk(chos, "\t\n\r")))
        es_front_python(argv, "chos", "a value the cache does not key on");
    if (getenv("ENVSCHED_NO_RUN_CACHE"))
        es_front_python(argv, "chos", "ENVSCHED_NO_RUN_CACHE");
    /* the entry: the user's, for exactly these inputs (runcache.py run_inputs) */
    if (es_user_lookup(uid, &u) != 0)
        es_front_python(argv, "chos", "user lookup");
    snprintf(inputs, sizeof inputs, "uid=%u\tname=%s\tchos=%s\tpolicy=%s", (unsigned)uid, env_name,
             chos ? chos : "", policy);
    es_cache_name(inputs, name);
    snprintf(path, sizeof path, "%s/.cache/envsched/run/%s", u.home, name);
    if (es_front_entry(path, uid, HEADER, inputs, &u, &e, why, sizeof why) != 0)
        es_front_python(argv, "chos", why);
    /* the admin log's line, as the resolver's (audit.py: syslog; the user cannot write log_file) */
    openlog("envsched", LOG_PID, LOG_DAEMON);
    syslog(LOG_INFO, "event=decided user=%s env=%s source=option path=%s by=cache", u.name, e.env, e.plan.source);
    closelog();
    es_front_enter(&e, command, 1, &u);
}
