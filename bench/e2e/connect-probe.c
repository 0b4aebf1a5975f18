/*
 * Connection setup time to one address, measured from inside the lab's
 * client namespace (bench/e2e builds this with clang and runs it through
 * nsenter): COUNT blocking TCP connects one after another, each timed with
 * CLOCK_MONOTONIC from just before connect() to its return (the SYN's walk
 * through the router and the load balancer, the backend's SYN-ACK, the
 * client's ACK), then closed with a FIN (the client keeps the port in
 * TIME_WAIT, so no 5-tuple is reused and every connect is a new flow for
 * the load balancer).
 *
 * Why C and blocking connect(): the first version timed Node's 'connect'
 * event, which adds the event loop's wake-up to every sample (tens to
 * thousands of µs on a shared 2-core machine) and hides the load balancer's
 * few µs. A blocking connect() on veth links is processed almost entirely in
 * the caller's syscall and softirq, so the sample is the kernel's work.
 *
 *   connect-probe HOST PORT COUNT WARMUP
 *
 * Prints one JSON line: {"ns":[...],"failed":F,"error":"..."}: the setup
 * time in nanoseconds of each connect that succeeded, in order; F counts the
 * connects that failed (refused, unreachable, or not established within 3 s:
 * a SYN and its retransmissions) and are not in "ns"; "error" is the first
 * failure's strerror ("" when none). Exit 2 on bad arguments.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One connect: its setup time in ns, or 0 when it failed (errno kept in *err). */
static uint64_t one(const struct sockaddr_in *dst, int *err)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		*err = errno;
		return 0;
	}
	/* connect() gives up after SO_SNDTIMEO (EINPROGRESS). */
	struct timeval tv = { .tv_sec = 3, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	uint64_t t0 = now_ns();
	int rc = connect(fd, (const struct sockaddr *)dst, sizeof(*dst));
	uint64_t t1 = now_ns();
	if (rc != 0)
		*err = errno;
	close(fd);
	return rc == 0 ? (t1 - t0 ? t1 - t0 : 1) : 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: connect-probe HOST PORT COUNT WARMUP\n");
		return 2;
	}
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	long count = atol(argv[3]), warmup = atol(argv[4]);
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1 || count < 1 || warmup < 0) {
		fprintf(stderr, "connect-probe: bad HOST %s, COUNT %s or WARMUP %s\n", argv[1], argv[3], argv[4]);
		return 2;
	}
	int err = 0, first_err = 0;
	/* Warm-up: neighbour entries, route caches, the backends' accept queues. */
	for (long i = 0; i < warmup; i++)
		one(&dst, &err);
	uint64_t *ns = calloc((size_t)count, sizeof(*ns));
	if (!ns)
		return 1;
	long failed = 0;
	for (long i = 0; i < count; i++) {
		err = 0;
		ns[i] = one(&dst, &err);
		if (!ns[i]) {
			failed++;
			if (!first_err)
				first_err = err ? err : EIO;
		}
	}
	printf("{\"ns\":[");
	int sep = 0;
	for (long i = 0; i < count; i++) {
		if (!ns[i])
			continue;
		printf("%s%llu", sep ? "," : "", (unsigned long long)ns[i]);
		sep = 1;
	}
	printf("],\"failed\":%ld,\"error\":\"%s\"}\n", failed, first_err ? strerror(first_err) : "");
	free(ns);
	return 0;
}
