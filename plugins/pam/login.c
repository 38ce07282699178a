/* Who logs in, through what, and what they asked for.
 *
 * The user and the service come from PAM items the application set (trusted: the application
 * authenticated the user). The request is `CHOS` from the PAM environment, where a service puts
 * it (pam_env, a login program); it is only passed on to the resolver as one argv element,
 * checked there like every other request. ~/.chos is not touched here: the resolver reads it as
 * the user.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <security/pam_ext.h>

#include "es_pam.h"

static const char *item(pam_handle_t *pamh, int type)
{
    const void *v = NULL;
    if (pam_get_item(pamh, type, &v) != PAM_SUCCESS || v == NULL)
        return "";
    return v;
}

/* a value for the log: control characters, spaces and non-ASCII bytes shown as '?', truncated; a
 * remote host name or a tty is the application's, but may come from DNS or a client */
static const char *printable(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in[i] && i + 1 < len; i++)
        out[i] = in[i] > ' ' && in[i] < 0x7f ? in[i] : '?';
    out[i] = '\0';
    return out;
}

int es_login_get(pam_handle_t *pamh, struct es_login *l, char *err, size_t errlen)
{
    struct passwd pw, *found = NULL;
    char buf[16384];

    memset(l, 0, sizeof *l);
    l->user = item(pamh, PAM_USER);
    l->service = printable(item(pamh, PAM_SERVICE), l->bufs[0], 65);
    l->tty = printable(item(pamh, PAM_TTY), l->bufs[1], 65);
    l->rhost = printable(item(pamh, PAM_RHOST), l->bufs[2], sizeof l->bufs[2]);
    printable(l->user, l->shown_user, 65);
    if (l->user[0] == '\0') {
        snprintf(err, errlen, ES_PREFIX "no user in the PAM session");
        return -1;
    }
    int rc = getpwnam_r(l->user, &pw, buf, sizeof buf, &found);
    if (found == NULL) {
        snprintf(err, errlen, ES_PREFIX "unknown user %s (%s)", l->shown_user, rc ? strerror(rc) : "not found");
        return -1;
    }
    l->uid = pw.pw_uid;
    l->owner = getpid();
    snprintf(l->key, sizeof l->key, "pam-%u-%d", (unsigned)l->uid, (int)l->owner);
    const char *chos = pam_getenv(pamh, "CHOS");
    if (chos && strlen(chos) >= sizeof l->chos) {
        snprintf(err, errlen, ES_PREFIX "CHOS is longer than %zu characters", sizeof l->chos - 1);
        return -2;
    }
    snprintf(l->chos, sizeof l->chos, "%s", chos ? chos : "");
    return 0;
}

/* 1 when the user is listed in exempt_users (default: root) */
int es_login_exempt(const struct es_conf *c, const struct es_login *l)
{
    size_t n = strlen(l->user);

    for (const char *p = c->exempt; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, l->user, n) == 0)
            return 1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}
