/* es_config_parse_args (plugins/slurm-spank/config.c): the SPANK plugin's plugstack.conf arguments.
 * Input: the arguments, separated by NUL bytes. */
#include <stdarg.h>

#include "fuzz.h"
#include "envsched_spank.h"

void slurm_error(const char *format, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof buf, format, ap);     /* formats every argument, as slurm would */
    va_end(ap);
}

static void check_path(const char *p, size_t cap)
{
    CHECK(fz_terminated(p, cap));
    CHECK(p[0] == '/' && strstr(p, "/../") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct es_config cfg;
    char *argv[65];
    int argc = fz_argv(data, size, argv, 64);

    cfg = es_cfg;                                /* the plugin's defaults */
    int rc = es_config_parse_args(&cfg, argc, argv);
    CHECK(rc == 0 || rc == -1);
    CHECK(cfg.nbinds >= 0 && cfg.nbinds <= ES_MAX_BINDS);
    if (rc == 0) {
        check_path(cfg.policy, sizeof cfg.policy);
        check_path(cfg.resolver, sizeof cfg.resolver);
        check_path(cfg.run_dir, sizeof cfg.run_dir);
        for (int i = 0; i < cfg.nbinds; i++)
            check_path(cfg.binds[i], sizeof cfg.binds[i]);
        CHECK(fz_terminated(cfg.host_tools, sizeof cfg.host_tools));
        if (cfg.host_tools[0])
            check_path(cfg.host_tools, sizeof cfg.host_tools);
        CHECK(cfg.validate == 0 || cfg.validate == 1);
    }
    fz_free_argv(argv);
    return 0;
}
