/* The Slurm plugin's part of an environment's launcher that is not a task's (remote.c use_launcher
 * is): getting the stub into the views. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "envsched_spank.h"
#include "../common/es_launch.h"

/* slurmstepd before Slurm 23.11 (no spank_prepend_task_argv): one more bind= for every view, the
 * static stub envsched-launch (launch_stub.c) that starts a task through its environment's launcher,
 * read-only at ES_LAUNCH_STUB. It is the file beside this plugin (the package installs both;
 * `make -C plugins/slurm-spank` builds both), root's and trusted like the resolver; a bind of the
 * shim's like those of plugstack.conf, so every view of the node has it whether or not its
 * environment has a launcher (one file bind per view; a launcher's task refuses in one line when it
 * is missing, remote.c). Without it nothing else changes: the reason goes to slurmd's log. */
void es_launch_stub_bind(struct es_config *cfg)
{
    static int done;
    Dl_info self;
    char stub[PATH_MAX], err[PATH_MAX + 256];
    const char *slash;

    if (done++ || spank_prepend_task_argv != NULL)
        return;                               /* once per process; Slurm 23.11+ needs no stub */
    if (dladdr((void *)es_launch_stub_bind, &self) == 0 || self.dli_fname == NULL ||
        (slash = strrchr(self.dli_fname, '/')) == NULL) {
        slurm_info(ES_PREFIX "cannot find this plugin's own path: no launcher stub in the views");
        return;
    }
    snprintf(stub, sizeof stub, "%.*s/envsched-launch", (int)(slash - self.dli_fname), self.dli_fname);
    if (es_trusted_program(stub, err, sizeof err) != 0) {
        slurm_info(ES_PREFIX "no launcher stub in the views (environments with a launcher refuse their tasks): %s",
                   err);
        return;
    }
    if (strchr(stub, ':') != NULL || strlen(stub) + sizeof ES_LAUNCH_STUB + 4 > PATH_MAX) {
        slurm_info(ES_PREFIX "no launcher stub in the views: its path %s cannot be a bind (':', length)", stub);
        return;
    }
    if (cfg->nbinds == ES_MAX_BINDS) {
        slurm_info(ES_PREFIX "no launcher stub in the views: already %d bind= arguments", cfg->nbinds);
        return;
    }
    snprintf(cfg->binds[cfg->nbinds++], PATH_MAX, "%s:%s:ro", stub, ES_LAUNCH_STUB);
}
