/* Exit codes shared by every envsched program.
 *
 * Defined once in Python: src/envsched/exitcodes.py (class ExitCode). This header mirrors
 * it for the C shims; tests/unit/test_exitcodes.py fails if the two drift apart.
 */
#ifndef ENVSCHED_EXIT_H
#define ENVSCHED_EXIT_H

enum envsched_exit {
    ENVSCHED_EXIT_OK = 0,
    ENVSCHED_EXIT_CHECK_FAILED = 1,
    ENVSCHED_EXIT_USAGE = 64,
    ENVSCHED_EXIT_NO_USER = 67,
    ENVSCHED_EXIT_ENV_BROKEN = 69,
    ENVSCHED_EXIT_INTERNAL = 70,
    ENVSCHED_EXIT_SETUP_FAILED = 71,
    ENVSCHED_EXIT_NOT_PERMITTED = 73,
    ENVSCHED_EXIT_JOB_ABORTED = 75,
    ENVSCHED_EXIT_SCHEDULER_FAILED = 76,
    ENVSCHED_EXIT_REFUSED = 77,
    ENVSCHED_EXIT_POLICY_INVALID = 78,
    ENVSCHED_EXIT_EXEC_FAILED = 126,
    ENVSCHED_EXIT_NOT_FOUND = 127,
};

#endif
