/* es_conf_parse (plugins/pam/conf.c): the PAM module's arguments from /etc/pam.d.
 * Input: the arguments, separated by NUL bytes. */
#include <stdarg.h>
#include <syslog.h>
#include <security/pam_ext.h>

#include "fuzz.h"
#include "es_pam.h"

void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    (void)pamh, (void)priority;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
}

static void check_path(const char *p, size_t cap)
{
    CHECK(fz_terminated(p, cap));
    CHECK(p[0] == '/' && strstr(p, "/../") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct es_conf c;
    char *argv[65];
    int argc = fz_argv(data, size, argv, 64);

    int rc = es_conf_parse(NULL, argc, (const char **)argv, &c);
    CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        check_path(c.policy, sizeof c.policy);
        check_path(c.resolver, sizeof c.resolver);
        check_path(c.run_dir, sizeof c.run_dir);
        CHECK(fz_terminated(c.exempt, sizeof c.exempt));
        CHECK(c.failure == ES_FAIL_CLOSED || c.failure == ES_FAIL_DEFAULT || c.failure == ES_FAIL_OPEN);
        CHECK(c.debug == 0 || c.debug == 1);
        CHECK(c.cache == 0 || c.cache == 1);
        CHECK(c.log_file[0] == '\0' || (check_path(c.log_file, sizeof c.log_file), 1));
    }
    fz_free_argv(argv);
    return 0;
}
