#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/types.h>
#include <linux/ioctl.h>

/* test_hmm's interface, as in Linux 6.1's lib/test_hmm_uapi.h */
#ifndef HMM_DMIRROR_READ
struct hmm_dmirror_cmd {
	__u64 addr;
	__u64 ptr;
	__u64 npages;
	__u64 cpages;
	__u64 faults;
};
#define HMM_DMIRROR_READ		_IOWR('H', 0x00, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_WRITE		_IOWR('H', 0x01, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_DEV	_IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_SNAPSHOT		_IOWR('H', 0x04, struct hmm_dmirror_cmd)
#endif

#define PAGE 4096UL
#define BASE 0x10000000000UL	/* the trace's page v is BASE + v * PAGE */
#define KSFT_PASS 0
#define KSFT_FAIL 1
#define KSFT_SKIP 4

/* Every process runs the whole program; line i runs only in its process, in
 * turn: a shared page holds whose turn it is and the failure count. */
static struct shared { volatile int turn; volatile int failed; } *sh;
static int me;		/* this process's trace handle (P0, P1, ...) */
static pid_t pids[64];	/* the pid of each forked process, in its parent */
static int dev[8];	/* mirror fds by D handle, in the process that opened it */
static char res[1 << 16];
static sigjmp_buf jb;

static __attribute__((unused)) void on_fault(int sig)
{
	siglongjmp(jb, sig);
}

static __attribute__((unused)) int turn(int line, int p)
{
	while (sh->turn < line)
		usleep(100);
	return me == p;
}

static __attribute__((unused)) void next(void)
{
	__atomic_add_fetch(&sh->turn, 1, __ATOMIC_SEQ_CST);
}

static __attribute__((unused)) void check(int line, const char *op, const char *want)
{
	if (strcmp(res, want)) {
		sh->failed++;
		printf("# line %d: %s => %s, the model expects %s\n", line, op, res, want);
	} else {
		printf("# line %d: %s => %s\n", line, op, res);
	}
	fflush(stdout);
	next();
}

static __attribute__((unused)) char *addr(long v)
{
	return (char *)(BASE + (unsigned long)v * PAGE);
}

static __attribute__((unused)) void err(int r)
{
	snprintf(res, sizeof(res), "%s", r ? strerrorname_np(errno) : "ok");
}

static __attribute__((unused)) void op_mmap(long s, long n, int prot, int shared, int huge)
{
	int flags = MAP_FIXED | MAP_ANONYMOUS | (shared ? MAP_SHARED : MAP_PRIVATE);
	int r = mmap(addr(s), n * PAGE, prot, flags, -1, 0) == MAP_FAILED;

	if (!r && huge)
		r = madvise(addr(s), n * PAGE, MADV_HUGEPAGE);
	err(r);
}

static __attribute__((unused)) void op_mremap(long old, long n, long new)
{
	err(mremap(addr(old), n * PAGE, n * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
		   addr(new)) == MAP_FAILED);
}

/* CPU access to page v: 0 or the signal */
static __attribute__((unused)) int access_word(long v, int write, int64_t *w)
{
	volatile int64_t *p = (volatile int64_t *)addr(v);
	int sig = sigsetjmp(jb, 1);

	if (sig)
		return sig;
	if (write)
		*p = *w;
	else
		*w = *p;
	return 0;
}

static __attribute__((unused)) void op_read_range(long v, long n, int single)
{
	size_t pos = single ? 0 : (size_t)sprintf(res, "values");
	int64_t w;
	long i;

	for (i = 0; i < n; i++) {
		int sig = access_word(v + i, 0, &w);

		if (sig) {
			sprintf(res, "%s", sig == SIGSEGV ? "SIGSEGV" : "SIGBUS");
			return;
		}
		pos += snprintf(res + pos, sizeof(res) - pos, single ? "%lld" : " %lld",
				(long long)w);
	}
}

static __attribute__((unused)) void op_write_range(long v, long n, int64_t x, int64_t stride)
{
	long i;

	for (i = 0; i < n; i++) {
		int64_t w = (int64_t)((uint64_t)x + (uint64_t)i * (uint64_t)stride);
		int sig = access_word(v + i, 1, &w);

		if (sig) {
			sprintf(res, "%s", sig == SIGSEGV ? "SIGSEGV" : "SIGBUS");
			return;
		}
	}
	sprintf(res, "ok");
}

static __attribute__((unused)) void op_open(int d, int minor)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", minor);
	dev[d] = open(path, O_RDWR | O_CLOEXEC);
	if (dev[d] < 0)
		sprintf(res, "%s", strerrorname_np(errno));
	else
		sprintf(res, "D%d", d);
}

static __attribute__((unused)) const char *snap_word(unsigned char b)
{
	static const char *const sys[] = { "none", "r", "w", "w", "none", "r+pmd", "w+pmd", "w+pmd" };

	if (b == 0xFF)
		return "error";
	switch (b & 0xF0) {
	case 0x30:
		return "none";	/* another device's page */
	case 0x20:
		return (b & 2) ? "dev-w" : "dev-r";
	case 0x10:
		return "zero";
	case 0x00:
		return sys[b & 7];
	}
	return "other";
}

static __attribute__((unused)) void op_dev(unsigned long req, int d, long s, long n, int64_t x, int64_t stride)
{
	size_t bytes = req == HMM_DMIRROR_SNAPSHOT ? (size_t)n : (size_t)n * PAGE;
	unsigned char *buf = calloc(1, bytes ? bytes : 1);
	struct hmm_dmirror_cmd cmd = { .addr = (__u64)addr(s), .ptr = (__u64)buf, .npages = n };
	size_t pos = 0;
	long i;

	for (i = 0; req == HMM_DMIRROR_WRITE && i < n; i++)
		*(int64_t *)(buf + i * PAGE) = (int64_t)((uint64_t)x + (uint64_t)i * (uint64_t)stride);
	if (ioctl(dev[d], req, &cmd) < 0) {
		sprintf(res, "%s", strerrorname_np(errno));
	} else if (req == HMM_DMIRROR_READ) {
		pos = sprintf(res, "values");
		for (i = 0; i < n; i++)
			pos += snprintf(res + pos, sizeof(res) - pos, " %lld",
					(long long)*(int64_t *)(buf + i * PAGE));
		snprintf(res + pos, sizeof(res) - pos, " faults %llu", (unsigned long long)cmd.faults);
	} else if (req == HMM_DMIRROR_WRITE) {
		sprintf(res, "ok faults %llu", (unsigned long long)cmd.faults);
	} else if (req == HMM_DMIRROR_MIGRATE_TO_DEV) {
		sprintf(res, "%llu", (unsigned long long)cmd.cpages);
	} else {
		pos = sprintf(res, "snap");
		for (i = 0; i < n; i++)
			pos += snprintf(res + pos, sizeof(res) - pos, " %s", snap_word(buf[i]));
	}
	free(buf);
}

static __attribute__((unused)) void op_fork(int child)
{
	pid_t pid = fork();

	if (pid == 0)
		me = child;
	else
		pids[child] = pid;
	if (pid < 0)
		sprintf(res, "%s", strerrorname_np(errno));
	else
		sprintf(res, "P%d", child);
}

static __attribute__((unused)) void setup(void)
{
	struct sigaction sa = { .sa_handler = on_fault };

	sh = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		exit(KSFT_FAIL);
	}
	sh->turn = 1;	/* lines count from 1 */
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	printf("TAP version 13\n1..1\n");
	fflush(stdout);
}

/* exit P: the process leaves; its parent waits for it, then the line is checked */
static __attribute__((unused)) void op_exit_wait(int line, const char *op, int child)
{
	waitpid(pids[child], NULL, 0);
	sprintf(res, "ok");
	check(line, op, "ok");
}

static __attribute__((unused)) int finish(const char *name)
{
	if (me != 0)
		_exit(0);
	while (wait(NULL) > 0)
		;
	printf("%s 1 %s\n", sh->failed ? "not ok" : "ok", name);
	return sh->failed ? KSFT_FAIL : KSFT_PASS;
}
