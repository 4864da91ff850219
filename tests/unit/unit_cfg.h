/* The configuration from a string, through a temporary file (config
 * tests). */
#ifndef VOLLEY_TEST_UNIT_CFG_H
#define VOLLEY_TEST_UNIT_CFG_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"

static inline int unit_cfg_load(struct cfg *c, const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/volley-conf-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	int rc = cfg_load(c, path, err, errlen);
	unlink(path);
	return rc;
}

#endif
