# Compiler flags every envsched C shim is built with (included by each plugin's Makefile, which adds
# -fPIC/-fPIE and visibility to its own HARDEN): stack protector, fortified libc calls, and
# warnings as errors.
HARDEN_COMMON := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -D_GNU_SOURCE \
                 -Wall -Wextra -Werror -Wformat=2 -Wno-format-nonliteral
