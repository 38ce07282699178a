/* The resolver's log, replayed into slurmd's log (only when something went wrong). The
 * runner itself is shared with the other shims: plugins/common/es_run.c. */
#include <string.h>

#include "envsched_spank.h"

/* Every line the resolver wrote, into slurmd's log. */
void es_replay_log(const struct es_run *r)
{
    char copy[sizeof r->err];
    char *save = NULL;

    memcpy(copy, r->err, sizeof copy);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        slurm_error(ES_PREFIX "resolver: %s", line);
}
