/* The resolver's log, replayed into slurmd's log (only when something went wrong, or with the
 * `debug` argument), and the exit code a refused job or step ends with. The runner itself is
 * shared with the other shims: plugins/common/es_run.c. */
#include <string.h>

#include "envsched_spank.h"

/* Every line the resolver wrote, into slurmd's log. In slurmstepd, slurm_error() also reaches the
 * user (the step's stderr is task 0's: mgr.c, _slurmd_job_log_init), so a step logs at info level,
 * which goes to the log file only (SlurmdDebug=info, the default, or higher). */
void es_replay_log(const struct es_run *r, int as_error)
{
    char copy[sizeof r->err];
    char *save = NULL;

    memcpy(copy, r->err, sizeof copy);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (as_error)
            slurm_error(ES_PREFIX "resolver: %s", line);
        else
            slurm_info(ES_PREFIX "resolver: %s", line);
    }
}

/* The resolver's exit status as the exit code of a refused job: its own codes (64-78) as they are;
 * anything else (it could not start, was killed, ran too long) is an internal error, never a code
 * that reads like the program's own (126/127) or like a signal (128+N). */
int es_exit_code(int status)
{
    return status >= ENVSCHED_EXIT_USAGE && status <= ENVSCHED_EXIT_POLICY_INVALID ? status
                                                                                   : ENVSCHED_EXIT_INTERNAL;
}
