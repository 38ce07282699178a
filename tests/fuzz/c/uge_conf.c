/* es_conf_load (plugins/uge/starter/conf.c): the set-user-ID starter's configuration file, also the
 * Torque starter's: `<its own path>.conf`. Here its own path, readlink("/proc/self/exe"), is
 * $ES_FUZZ_DIR/uge-starter (default: a new directory in /dev/shm), each input is written to
 * uge-starter.conf there, and es_trusted_path is replaced (that directory need not be root's).
 * Oracle: every value it accepts is a whole line "key=value" of the input (a long line must not be
 * read as two). */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fuzz.h"
#include "starter.h"

int es_trusted_path(const char *path, char *err, size_t errlen)
{
    (void)path, (void)err, (void)errlen;
    return 0;
}

static char dir[PATH_MAX], conf[PATH_MAX + 32];

ssize_t readlink(const char *path, char *buf, size_t len)
{
    if (dir[0] && strcmp(path, "/proc/self/exe") == 0) {
        int n = snprintf(buf, len, "%s/uge-starter", dir);
        return n < 0 || (size_t)n >= len ? (errno = ENAMETOOLONG, -1) : n;
    }
    return syscall(SYS_readlink, path, buf, len);
}

static void cleanup(void)
{
    unlink(conf);
    if (getenv("ES_FUZZ_DIR") == NULL)
        rmdir(dir);
}

static void setup(void)
{
    const char *given = getenv("ES_FUZZ_DIR");
    if (given != NULL)
        snprintf(dir, sizeof dir, "%s", given);
    else {
        snprintf(dir, sizeof dir, "/dev/shm/envsched-fuzz-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            snprintf(dir, sizeof dir, "/tmp/envsched-fuzz-XXXXXX");
            if (mkdtemp(dir) == NULL)
                abort();
        }
    }
    snprintf(conf, sizeof conf, "%s/uge-starter.conf", dir);
    atexit(cleanup);
}

/* "key=value" starts a line of data and ends at '\r', '\n', a NUL or the end */
static int whole_line(const uint8_t *data, size_t size, const char *key, const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    for (size_t at = 0; at < size; ) {
        if (at + kl + 1 + vl <= size && !memcmp(data + at, key, kl) && data[at + kl] == '=' &&
            !memcmp(data + at + kl + 1, value, vl)) {
            size_t end = at + kl + 1 + vl;
            if (end == size || data[end] == '\r' || data[end] == '\n' || data[end] == '\0')
                return 1;
        }
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        if (nl == NULL)
            break;
        at = (size_t)(nl - data) + 1;
    }
    return 0;
}

static void check_value(const uint8_t *data, size_t size, const char *key, const char *v, size_t cap)
{
    CHECK(fz_terminated(v, cap));
    if (v[0] == '\0')
        return;
    CHECK(v[0] == '/');
    if (strcmp(key, "run_dir") == 0 && strcmp(v, "/run/envsched") == 0)
        return;                                         /* the default */
    CHECK(whole_line(data, size, key, v));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct es_conf c;
    char err[1024];

    if (conf[0] == '\0')
        setup();
    int fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
        abort();

    memset(err, 0x5a, sizeof err);
    int rc = es_conf_load(&c, NULL, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        CHECK(fz_terminated(err, sizeof err) && err[0] != '\0');
        return 0;
    }
    CHECK(c.policy[0] && c.resolver[0]);
    CHECK(c.nbinds >= 0 && c.nbinds <= ES_MAX_BINDS);
    check_value(data, size, "policy", c.policy, sizeof c.policy);
    check_value(data, size, "resolver", c.resolver, sizeof c.resolver);
    check_value(data, size, "run_dir", c.run_dir, sizeof c.run_dir);
    check_value(data, size, "log_file", c.log_file, sizeof c.log_file);
    check_value(data, size, "host_tools", c.host_tools, sizeof c.host_tools);
    for (int i = 0; i < c.nbinds; i++)
        check_value(data, size, "bind", c.binds[i], sizeof c.binds[i]);
    return 0;
}
