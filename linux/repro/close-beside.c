// SPDX-License-Identifier: GPL-2.0
/*
 * close-beside: run a trace with the guest runner while another process opens and
 * closes its own file of /dev/hmm_dmirror0, the release that Linux 6.1's test_hmm
 * turns into an eviction of every chunk of the device (dmirror_fops_release ->
 * dmirror_device_evict_chunk), the trace's device pages included (SPEC Appendix D29).
 *
 * Usage: close-beside MODE USEC REPS TRACE
 *   runs "/mfrun --timeout 15 TRACE" REPS times, each run headed by a line
 *   "# close-beside: rep I mode MODE delay D us"; beside each run:
 *   none  - nothing (the control);
 *   loop  - a process that opens and closes /dev/hmm_dmirror0 every USEC us;
 *   once  - the same, once, USEC us after the run starts;
 *   sweep - once, USEC * I us after run I starts.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_us(long us)
{
	struct timespec t = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
	const char *mode;
	long us;
	int reps, i;

	if (argc != 5) {
		fprintf(stderr, "usage: close-beside none|loop|once|sweep USEC REPS TRACE\n");
		return 2;
	}
	mode = argv[1];
	us = atol(argv[2]);
	reps = atoi(argv[3]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < reps; i++) {
		long delay = !strcmp(mode, "sweep") ? us * i : us;
		pid_t run, closer = -1;

		printf("# close-beside: rep %d mode %s delay %ld us\n", i, mode, delay);
		fflush(stdout);
		run = fork();
		if (run == 0) {
			execl("/mfrun", "/mfrun", "--timeout", "15", argv[4], (char *)NULL);
			_exit(127);
		}
		if (strcmp(mode, "none")) {
			closer = fork();
			if (closer == 0) {
				do {
					int fd;

					sleep_us(delay);
					fd = open("/dev/hmm_dmirror0", O_RDWR);
					if (fd >= 0)
						close(fd);
				} while (!strcmp(mode, "loop"));
				_exit(0);
			}
		}
		waitpid(run, NULL, 0);
		if (closer > 0) {
			kill(closer, SIGKILL);
			waitpid(closer, NULL, 0);
		}
	}
	return 0;
}
