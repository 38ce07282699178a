/* The resolver's shim lines (src/envsched/shim.py: "uid N", "pin PATH", "home PATH", "env ..."),
 * as the C shims read them from a pin's `shim` file or the resolver's output:
 *   - the Grid Engine starter's check() (plugins/uge/starter/pin.c, static: included here),
 *   - its es_env_apply_shim() (plugins/uge/starter/envops.c, built with getenv/setenv/unsetenv
 *     renamed to the small table below, so that no input grows the process environment),
 *   - the PAM module's es_shim_parse() (plugins/pam/shim.c, through shim_pam.c: its es_pam.h and
 *     starter.h both define struct es_conf).
 * The Torque starter's read_pin() (plugins/torque/torque/tpin.c) has the same loop as check() inline.
 * Input: the shim text (up to its first NUL, at most ES_SHIM_MAX - 2 bytes as read_shim allows). */
#include <errno.h>

#include "fuzz.h"
#include "../../../plugins/uge/starter/pin.c"

int fz_pam_shim_parse(const char *text);

/* --- the environment es_env_apply_shim sees ------------------------------------------------ */
#define FZ_ENV_MAX 64
static char *env_name[FZ_ENV_MAX], *env_value[FZ_ENV_MAX];

static int env_find(const char *name)
{
    for (int i = 0; i < FZ_ENV_MAX; i++)
        if (env_name[i] && strcmp(env_name[i], name) == 0)
            return i;
    return -1;
}

char *fz_getenv(const char *name)
{
    int i = env_find(name);
    return i >= 0 ? env_value[i] : NULL;
}

int fz_setenv(const char *name, const char *value, int replace)
{
    if (name == NULL || name[0] == '\0' || strchr(name, '=')) {
        errno = EINVAL;
        return -1;
    }
    int i = env_find(name);
    if (i >= 0 && !replace)
        return 0;
    if (i < 0)
        for (i = 0; i < FZ_ENV_MAX && env_name[i]; i++)
            ;
    if (i == FZ_ENV_MAX) {
        errno = ENOMEM;
        return -1;
    }
    char *n = strdup(name), *v = strdup(value);
    if (n == NULL || v == NULL)
        abort();
    free(env_name[i]);
    free(env_value[i]);
    env_name[i] = n;
    env_value[i] = v;
    return 0;
}

int fz_unsetenv(const char *name)
{
    if (name == NULL || name[0] == '\0' || strchr(name, '=')) {
        errno = EINVAL;
        return -1;
    }
    int i = env_find(name);
    if (i >= 0) {
        free(env_name[i]);
        free(env_value[i]);
        env_name[i] = env_value[i] = NULL;
    }
    return 0;
}

static void env_clear(void)
{
    for (int i = 0; i < FZ_ENV_MAX; i++) {
        free(env_name[i]);
        free(env_value[i]);
        env_name[i] = env_value[i] = NULL;
    }
}

int es_env_apply_shim(const char *shim);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct es_pin p;
    char err[1024];

    if (size > ES_SHIM_MAX - 2)
        return 0;
    memset(&p, 0, sizeof p);
    memcpy(p.shim, data, size);
    p.shim[size] = '\0';
    memset(p.home, 0x5a, sizeof p.home);
    p.home[0] = '\0';

    int rc = check(&p, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    CHECK(p.has_view == 0 || p.has_view == 1);
    CHECK(fz_terminated(p.home, sizeof p.home));
    if (rc != 0)
        CHECK(fz_terminated(err, sizeof err) && err[0]);

    rc = fz_pam_shim_parse(p.shim);
    CHECK(rc == 0 || rc == -1);

    fz_setenv("PATH", "/usr/bin:/bin", 1);
    fz_setenv("LD_LIBRARY_PATH", "/opt/lib", 1);
    rc = es_env_apply_shim(p.shim);
    CHECK(rc == 0 || rc == -1);
    for (int i = 0; i < FZ_ENV_MAX; i++)
        if (env_name[i])
            CHECK(env_name[i][0] && !strchr(env_name[i], '=') && env_value[i]);
    env_clear();
    return 0;
}
