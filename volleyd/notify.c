/*
 * sd_notify's protocol, without libsystemd (one datagram is all it is):
 * under systemd with Type=notify, $NOTIFY_SOCKET names a Unix datagram
 * socket ("@..." in the abstract namespace) that takes "READY=1" and
 * friends. Nothing happens when it is unset.
 */
#include "volleyd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int vd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
		vl_log(VL_LOG_WARN, "volleyd: NOTIFY_SOCKET=%s: not a socket path; ignored", path);
		return -1;
	}
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';      /* abstract: the length says where it ends */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ssize_t w = fd < 0 ? -1 : sendto(fd, state, strlen(state), MSG_NOSIGNAL,
					 (struct sockaddr *)&sa,
					 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (w < 0) {
		vl_log(VL_LOG_WARN, "volleyd: NOTIFY_SOCKET %s: %s", path, strerror(e));
		return -1;
	}
	return 0;
}
