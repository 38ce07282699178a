/* The PAM module's es_shim_parse() for shim.c (a translation unit of its own: es_pam.h and the
 * Grid Engine starter.h both define struct es_conf). */
#include "fuzz.h"
#include "es_pam.h"

int fz_pam_shim_parse(const char *text);

int fz_pam_shim_parse(const char *text)
{
    struct es_shim s;

    memset(&s, 0x5a, sizeof s);
    int rc = es_shim_parse(text, &s);
    CHECK(rc == 0 || rc == -1);
    CHECK(fz_terminated(s.environment, sizeof s.environment) && fz_terminated(s.key, sizeof s.key));
    CHECK(fz_terminated(s.pin, sizeof s.pin) && fz_terminated(s.warning, sizeof s.warning));
    if (rc == 0)
        CHECK(s.environment[0] && s.uid >= 0);
    return rc;
}
