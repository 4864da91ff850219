/* What several unit test files share: a scratch folder per test. */
#ifndef VOLLEY_TEST_UNIT_H
#define VOLLEY_TEST_UNIT_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

/* A fresh /tmp/volley-<name>-XXXXXX into dir (len octets). */
static inline void unit_tmpdir(char *dir, size_t len, const char *name)
{
	cr_assert_lt((size_t)snprintf(dir, len, "/tmp/volley-%s-XXXXXX", name), len);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
}

/* Remove it again, with whatever the test left in it. */
static inline void unit_rmdir(const char *dir)
{
	char cmd[4200];

	cr_assert_lt((size_t)snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir), sizeof cmd);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

#endif
