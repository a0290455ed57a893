// SPDX-License-Identifier: GPL-2.0
/*
 * mfrun: run mirrorfuzz traces (docs/spec.md §2) on Linux, sequentially, and
 * print each step line's result in trace syntax.
 *
 *   mfrun --parse-only FILE...   echo each trace in canonical text (no run)
 *   mfrun [--timeout S] [--race S] PATH...
 *                                run each trace (a directory: its *.trace
 *                                files in name order), each in fresh processes;
 *                                with --race, the plain lines before the first
 *                                `Tn =` run once, then every later op (the
 *                                threads' and the plain ones) loops in its own
 *                                thread (at most MF_RACERS of them: more is refused)
 *                                for S seconds ("# race:" lines count the runs and
 *                                results)
 *
 * Output of a run, per trace:
 *   # trace: PATH
 *   OP ARGS => RESULT            one per step line, in order
 *   # race-seen: R SRC PAGE WORD (race mode, printed by racer R the moment it
 *                                first sees WORD at PAGE; see below)
 *   # race-seen: R capped        (once, when racer R has MF_SEEN distinct ones)
 *   # race: LINE: N runs: KIND xC, KIND xC, ...
 *                                (race mode, one per racer line, in order)
 *   # race-words: R SRC PAGE:WORD:COUNT ...
 *                                (race mode, after its racer's "# race:" line,
 *                                at most 32 triples a line; then one
 *                                "# race-words: R end DISTINCT DROPPED" line)
 *   # end: PATH ok | refused line N: WHY | timeout | error WHY
 *
 * Race results.  R is the racer's index (0 = the first racer line).  KIND is
 * the result in trace syntax, cut at 47 characters, with the values of a
 * read_range or dread collapsed to "values" and a read's word to "word"; at
 * most MF_KINDS kinds, the rest counted as "other".  The words themselves are
 * reported apart, as distinct (SRC, PAGE, WORD): SRC "value" is a word of the
 * op's own result (read, read_range, dread; PAGE is the page it was read at),
 * "readback" a word of the buffer HMM_DMIRROR_MIGRATE_TO_DEV copies back on
 * success (test_hmm's dmirror_do_read of the migrated range).  Each racer keeps
 * at most MF_SEEN distinct ones; the "race-seen" lines come as they happen, so
 * they survive a kernel panic that cuts the run before the summary; DROPPED
 * counts the observations of pairs past the cap (0: the report is complete).
 * fuzz/linux/provenance.py parses these lines and judges them.
 *
 * Page v of the trace's address space is the address MF_BASE + v * 4096; a
 * page's word is the 64-bit integer at its start.  Every process Pk is a
 * server process forked from its parent (P0 from the coordinator), which runs
 * the ops the coordinator sends it; a mirror device Dk is /dev/hmm_dmirror0
 * for the trace's first mirror open and hmm_dmirror1 for the second (6.1's
 * two device-private devices), opened by the process that opens it and used
 * through test_hmm's ioctls (mf_hmm_uapi.h).  Ops with no Linux counterpart,
 * threads (Tn =, step, run) and addresses outside the window are refused by
 * name and end the trace.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mf_hmm_uapi.h"
#include "mfparse.h"

#define MF_PAGE 4096UL
#define MF_BASE 0x10000000000UL		/* page 0 */
#define MF_WINDOW (1L << 30)		/* pages 0 .. 2^30 - 1 */
#define MF_MAXP 64
#define MF_MAXD 256

/* ------------------------------------------------------------ messages */

static void die(const char *what)
{
	perror(what);
	_exit(4);
}

/* Channels are pipes (a tinyconfig kernel has no AF_UNIX): one command pipe
 * and one reply pipe per process handle, all made before P0 starts, so every
 * forked server finds its own. */
static int chan[MF_MAXP][4];	/* cmd read, cmd write, reply read, reply write */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w <= 0)
			return -1;
		p += w;
		len -= w;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t r = read(fd, p, len);

		if (r <= 0)
			return -1;
		p += r;
		len -= r;
	}
	return 0;
}

static int send_msg(int fd, const char *text)
{
	uint32_t len = strlen(text);

	return write_all(fd, &len, sizeof(len)) || write_all(fd, text, len) ? -1 : 0;
}

/* A malloc'd message, or NULL at EOF. */
static char *recv_msg(int fd)
{
	uint32_t len;
	char *buf;

	if (read_all(fd, &len, sizeof(len)))
		return NULL;
	buf = malloc(len + 1);
	if (!buf)
		die("malloc");
	if (read_all(fd, buf, len)) {
		free(buf);
		return NULL;
	}
	buf[len] = 0;
	return buf;
}

/* -------------------------------------------------------------- server */

static __thread sigjmp_buf fault_jmp;
static int dev_fd[MF_MAXD];

enum { SRC_VALUE, SRC_READBACK };	/* where a race saw a word (mf_sources) */
static void saw(int src, long page, int64_t word);

static void on_fault(int sig)
{
	siglongjmp(fault_jmp, sig);
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "EUNKNOWN";
}

static char *addr_of(long page)
{
	return (char *)(MF_BASE + (unsigned long)page * MF_PAGE);
}

static long num(const char *t)
{
	return strtol(t, NULL, 10);
}

static const char *sig_result(int sig)
{
	return sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : "SIGNAL";
}

/* CPU access: 0, or the signal it raised. */
static int cpu_access(long page, int write, int64_t *word)
{
	volatile int64_t *p = (volatile int64_t *)addr_of(page);
	int sig = sigsetjmp(fault_jmp, 1);

	if (sig)
		return sig;
	if (write)
		*p = *word;
	else
		*word = *p;
	return 0;
}

static int prot_of(const char *p)
{
	return !strcmp(p, "none") ? PROT_NONE : !strcmp(p, "r") ? PROT_READ
							       : PROT_READ | PROT_WRITE;
}

static char *dev_op(const struct mf_step *st, char *out, size_t outlen)
{
	const char *k = st->op->keyword;
	int fd = dev_fd[atoi(st->args[0] + 1) % MF_MAXD];
	long s = num(st->args[1]), n = num(st->args[2]), i;
	struct hmm_dmirror_cmd cmd = { .addr = (uint64_t)addr_of(s), .npages = (uint64_t)n };
	size_t bytes = !strcmp(k, "snapshot") ? (size_t)n : (size_t)n * MF_PAGE;
	char *buf = calloc(1, bytes ? bytes : 1);
	unsigned long req;
	size_t pos;

	if (!buf)
		return strcpy(out, "ENOMEM");
	cmd.ptr = (uint64_t)buf;
	if (!strcmp(k, "dwrite")) {
		int64_t x = num(st->args[3]), stride = st->nargs > 4 ? num(st->args[4]) : 0;

		for (i = 0; i < n; i++)
			((int64_t *)(buf + i * MF_PAGE))[0] = (int64_t)((uint64_t)x +
									(uint64_t)i * (uint64_t)stride);
	}
	req = !strcmp(k, "dread") ? HMM_DMIRROR_READ : !strcmp(k, "dwrite") ? HMM_DMIRROR_WRITE
		: !strcmp(k, "snapshot") ? HMM_DMIRROR_SNAPSHOT : HMM_DMIRROR_MIGRATE_TO_DEV;
	if (ioctl(fd, req, &cmd) < 0) {
		snprintf(out, outlen, "%s", errname(errno));
	} else if (req == HMM_DMIRROR_READ) {
		pos = snprintf(out, outlen, "values");
		for (i = 0; i < n; i++) {
			int64_t w = ((int64_t *)(buf + i * MF_PAGE))[0];

			saw(SRC_VALUE, s + i, w);
			if (pos < outlen)
				pos += snprintf(out + pos, outlen - pos, " %lld", (long long)w);
		}
		if (pos < outlen)
			snprintf(out + pos, outlen - pos, " faults %llu",
				 (unsigned long long)cmd.faults);
	} else if (req == HMM_DMIRROR_WRITE) {
		snprintf(out, outlen, "ok faults %llu", (unsigned long long)cmd.faults);
	} else if (req == HMM_DMIRROR_MIGRATE_TO_DEV) {
		/* on success test_hmm copied back its own read of the whole range */
		for (i = 0; i < n; i++)
			saw(SRC_READBACK, s + i, ((int64_t *)(buf + i * MF_PAGE))[0]);
		snprintf(out, outlen, "%llu", (unsigned long long)cmd.cpages);
	} else {
		pos = snprintf(out, outlen, "snap");
		for (i = 0; i < n && pos < outlen; i++) {
			unsigned char b = (unsigned char)buf[i];
			const char *w, *pmd = (b & HMM_DMIRROR_PROT_PMD) ? "+pmd" : "";
			int wr = b & HMM_DMIRROR_PROT_WRITE;
			char tmp[16];

			if (b == HMM_DMIRROR_PROT_ERROR)
				w = "error";
			else if ((b & 0xF0) == HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE)
				w = "none";
			else if ((b & 0xF0) == HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL)
				w = wr ? "dev-w" : "dev-r";
			else if ((b & 0xF0) == HMM_DMIRROR_PROT_ZERO)
				w = "zero";
			else if (b & 0xF0)
				w = "other";
			else if (!(b & 3))
				w = "none";
			else
				w = wr ? "w" : "r";
			snprintf(tmp, sizeof(tmp), "%s%s", w, (b & 0xF0) && (b & 0xF0) != 0x10 ? "" : pmd);
			if (b == HMM_DMIRROR_PROT_ERROR || !strcmp(w, "none"))
				snprintf(tmp, sizeof(tmp), "%s", w);
			pos += snprintf(out + pos, outlen - pos, " %s", tmp);
		}
	}
	free(buf);
	return out;
}

static char *cpu_op(const struct mf_step *st, char *out, size_t outlen)
{
	const char *k = st->op->keyword;
	long s = num(st->args[1]), n = st->nargs > 2 ? num(st->args[2]) : 1, i;
	size_t len = (size_t)n * MF_PAGE, pos;
	int64_t word;
	int r = 0, sig;

	if (!strcmp(k, "mmap")) {
		int flags = MAP_FIXED | MAP_ANONYMOUS |
			    (!strcmp(st->args[4], "shared") ? MAP_SHARED : MAP_PRIVATE);

		r = mmap(addr_of(s), len, prot_of(st->args[3]), flags, -1, 0) == MAP_FAILED ? -1 : 0;
		if (!r && st->nargs > 5)
			r = madvise(addr_of(s), len, MADV_HUGEPAGE);
	} else if (!strcmp(k, "munmap")) {
		r = munmap(addr_of(s), len);
	} else if (!strcmp(k, "mprotect")) {
		r = mprotect(addr_of(s), len, prot_of(st->args[3]));
	} else if (!strcmp(k, "madvise")) {
		const char *a = st->args[3];

		r = madvise(addr_of(s), len, !strcmp(a, "dontneed") ? MADV_DONTNEED
					     : !strcmp(a, "hugepage") ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	} else if (!strcmp(k, "mremap")) {
		r = mremap(addr_of(s), len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
			   addr_of(num(st->args[3]))) == MAP_FAILED ? -1 : 0;
	} else if (!strcmp(k, "read")) {
		sig = cpu_access(s, 0, &word);
		if (sig)
			return strcpy(out, sig_result(sig));
		saw(SRC_VALUE, s, word);
		snprintf(out, outlen, "%lld", (long long)word);
		return out;
	} else if (!strcmp(k, "write")) {
		word = num(st->args[2]);
		sig = cpu_access(s, 1, &word);
		return strcpy(out, sig ? sig_result(sig) : "ok");
	} else if (!strcmp(k, "read_range")) {
		pos = snprintf(out, outlen, "values");
		for (i = 0; i < n; i++) {
			sig = cpu_access(s + i, 0, &word);
			if (sig)
				return strcpy(out, sig_result(sig));
			saw(SRC_VALUE, s + i, word);
			if (pos < outlen)
				pos += snprintf(out + pos, outlen - pos, " %lld", (long long)word);
		}
		return out;
	} else if (!strcmp(k, "write_range")) {
		int64_t x = num(st->args[3]), stride = st->nargs > 4 ? num(st->args[4]) : 0;

		for (i = 0; i < n; i++) {
			word = (int64_t)((uint64_t)x + (uint64_t)i * (uint64_t)stride);
			sig = cpu_access(s + i, 1, &word);
			if (sig)
				return strcpy(out, sig_result(sig));
		}
		return strcpy(out, "ok");
	}
	return strcpy(out, r ? errname(errno) : "ok");
}

/* ------------------------------------------------------------ races */

#define MF_RACERS 32
#define MF_KINDS 6
#define MF_SEEN 1024		/* distinct (source, page, word) kept per racer */
#define MF_SEEN_SLOTS 2048

static const char *const mf_sources[] = { "value", "readback" };

struct seen {
	long page;
	int64_t word;
	long count;
	int src, used;
};

struct racer {
	pthread_t th;
	char line[512];
	double deadline;
	long runs;
	int nkinds;
	char kind[MF_KINDS + 1][48];
	long count[MF_KINDS + 1];
	int index, nseen;
	long dropped;
	struct seen *seen;	/* MF_SEEN_SLOTS slots, open addressing */
};

static __thread struct racer *racing;	/* this thread's racer, in race mode */

/* A racer saw word at page (src: SRC_*): count it; print it the first time. */
static void saw(int src, long page, int64_t word)
{
	struct racer *r = racing;
	uint64_t h;
	size_t i;
	char text[96];
	int len;

	if (!r || !r->seen)
		return;
	h = (uint64_t)page * 0x9E3779B97F4A7C15ULL ^ (uint64_t)word * 0xC2B2AE3D27D4EB4FULL ^
	    (uint64_t)src;
	for (i = (h ^ h >> 31) % MF_SEEN_SLOTS; r->seen[i].used; i = (i + 1) % MF_SEEN_SLOTS)
		if (r->seen[i].page == page && r->seen[i].word == word && r->seen[i].src == src) {
			r->seen[i].count++;
			return;
		}
	if (r->nseen >= MF_SEEN) {
		if (!r->dropped++) {
			len = snprintf(text, sizeof(text), "# race-seen: %d capped\n", r->index);
			if (write(1, text, len) < 0)
				r->dropped++;
		}
		return;
	}
	r->seen[i] = (struct seen){ .page = page, .word = word, .count = 1, .src = src, .used = 1 };
	r->nseen++;
	/* one write(2) per line: racers' lines never interleave */
	len = snprintf(text, sizeof(text), "# race-seen: %d %s %ld %lld\n", r->index,
		       mf_sources[src], page, (long long)word);
	if (write(1, text, len) < 0)
		r->dropped++;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *race_loop(void *arg)
{
	struct racer *r = arg;
	char *out = malloc(1 << 17), err[256], buf[512];
	struct mf_step st;
	int i;

	if (!out)
		return NULL;
	racing = r;
	while (now() < r->deadline) {
		strcpy(buf, r->line);
		if (mf_parse_step(buf, &st, err))
			break;
		if (st.op->args[0].kind == 'D')
			dev_op(&st, out, 1 << 17);
		else
			cpu_op(&st, out, 1 << 17);
		if (!strncmp(out, "values", 6))
			out[6] = 0; /* counted by kind; the words are seen apart */
		else if (!strcmp(st.op->keyword, "read") && (isdigit((unsigned char)out[0]) ||
							     out[0] == '-'))
			strcpy(out, "word");
		out[47] = 0;
		for (i = 0; i < r->nkinds && strcmp(r->kind[i], out); i++)
			;
		if (i == r->nkinds && r->nkinds < MF_KINDS)
			strcpy(r->kind[r->nkinds++], out);
		else if (i == r->nkinds)
			strcpy(r->kind[i = MF_KINDS], "other");
		r->count[i]++;
		r->runs++;
	}
	free(out);
	return NULL;
}

/* Append printf-style text to the malloc'd *buf of *len used, *cap allocated bytes. */
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int k;

	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (k >= 0 && (size_t)k < *cap - *len)
			break;
		*cap *= 2;
		*buf = realloc(*buf, *cap);
		if (!*buf)
			die("realloc");
	}
	*len += k;
}

/* "race SECS\nLINE\nLINE...": loop each line in its own thread for SECS seconds; the
 * reply (malloc'd): per racer its "# race:" text without the prefix, then its
 * "# race-words: " lines (see the top of this file). */
static char *race(char *msg)
{
	static struct racer rs[MF_RACERS];
	double secs = atof(msg + 5);
	char *save = NULL, *line, *out;
	int n = 0, i, j, k;
	size_t len = 0, cap = 1 << 16;

	memset(rs, 0, sizeof(rs));
	out = malloc(cap);
	if (!out)
		die("malloc");
	out[0] = 0;
	strtok_r(msg, "\n", &save);
	while ((line = strtok_r(NULL, "\n", &save)) && n < MF_RACERS) {
		snprintf(rs[n].line, sizeof(rs[n].line), "%s", line);
		rs[n].deadline = now() + secs;
		rs[n].index = n;
		rs[n].seen = calloc(MF_SEEN_SLOTS, sizeof(struct seen));
		n++;
	}
	for (i = 0; i < n; i++)
		pthread_create(&rs[i].th, NULL, race_loop, &rs[i]);
	for (i = 0; i < n; i++) {
		pthread_join(rs[i].th, NULL);
		append(&out, &len, &cap, "%s%s: %ld runs:", i ? "\n" : "", rs[i].line, rs[i].runs);
		for (j = 0; j <= MF_KINDS; j++)
			if (rs[i].count[j])
				append(&out, &len, &cap, " %s x%ld,", rs[i].kind[j], rs[i].count[j]);
		for (k = 0; k < 2; k++) {
			int inline_ = 0;

			for (j = 0; rs[i].seen && j < MF_SEEN_SLOTS; j++) {
				struct seen *e = &rs[i].seen[j];

				if (!e->used || e->src != k)
					continue;
				if (inline_ == 32)
					inline_ = 0;
				if (!inline_)
					append(&out, &len, &cap, "\n# race-words: %d %s", i, mf_sources[k]);
				append(&out, &len, &cap, " %ld:%lld:%ld", e->page, (long long)e->word,
				       e->count);
				inline_++;
			}
		}
		append(&out, &len, &cap, "\n# race-words: %d end %d %ld", i, rs[i].nseen,
		       rs[i].dropped);
		free(rs[i].seen);
	}
	return out;
}

static void serve(int me)
{
	static char out[1 << 17];
	struct sigaction sa = { .sa_handler = on_fault };
	char err[256];

	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGCHLD, SIG_IGN);	/* children reap themselves */
	for (;;) {
		char *msg = recv_msg(chan[me][0]);
		struct mf_step st = { .result = NULL };

		if (!msg || !strcmp(msg, "quit"))
			_exit(0);
		if (!strcmp(msg, "exit")) {
			send_msg(chan[me][3], "ok");
			_exit(0);
		}
		if (!strncmp(msg, "fork ", 5)) {
			int child = atoi(msg + 5);
			pid_t pid = fork();

			if (pid == 0) {	/* the child serves its own channel */
				me = child;
				free(msg);
				continue;
			}
			if (pid < 0)
				snprintf(out, sizeof(out), "%s", errname(errno));
			else
				snprintf(out, sizeof(out), "ok %d", (int)pid);
		} else if (!strncmp(msg, "race ", 5)) {
			char *reply = race(msg);

			free(msg);
			send_msg(chan[me][3], reply);
			free(reply);
			continue;
		} else if (!strncmp(msg, "open ", 5)) {
			int d = atoi(msg + 5), minor = atoi(strchr(msg + 5, ' ') + 1), fd;
			char path[64];

			snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", minor);
			fd = open(path, O_RDWR | O_CLOEXEC);
			dev_fd[d % MF_MAXD] = fd;
			snprintf(out, sizeof(out), "%s", fd < 0 ? errname(errno) : "ok");
		} else if (mf_parse_step(msg, &st, err)) {
			snprintf(out, sizeof(out), "error %s", err);
		} else if (st.op->args[0].kind == 'D') {
			dev_op(&st, out, sizeof(out));
		} else {
			cpu_op(&st, out, sizeof(out));
		}
		free(st.result);
		free(msg);
		send_msg(chan[me][3], out);
	}
}

/* --------------------------------------------------------- coordinator */

enum { UNUSED, LIVE, DEAD, FAILED };
struct proc { int state; pid_t pid; };
struct dev { int state, proc; };

static struct proc procs[MF_MAXP];
static struct dev devs[MF_MAXD];
static int nprocs, ndevs, nmirrors;

static const char *const mf_linux_ops[] = {
	"mmap", "munmap", "mremap", "mprotect", "madvise", "fork", "exit", "read", "write",
	"open", "dread", "dwrite", "snapshot", "migrate_to_dev", "read_range", "write_range", NULL
};

static char *recv_reply(int p);

/* Start process `child`: P0 from the coordinator, any other by forking `from`. */
static int spawn(int from, int child)
{
	char *reply, msg[32];
	pid_t pid;

	if (from < 0) {
		pid = fork();
		if (pid < 0)
			return -1;
		if (pid == 0)
			serve(child);
		procs[child].pid = pid;
		return 0;
	}
	snprintf(msg, sizeof(msg), "fork %d", child);
	if (send_msg(chan[from][1], msg))
		return -1;
	reply = recv_reply(from);
	if (!reply || strncmp(reply, "ok ", 3)) {
		if (reply)
			errno = EAGAIN;
		free(reply);
		return -1;
	}
	procs[child].pid = atoi(reply + 3);
	free(reply);
	return 0;
}

static int gone(pid_t pid);

/* Process p's reply, or NULL if it died meanwhile (an oops kills it). */
static char *recv_reply(int p)
{
	struct pollfd pfd = { .fd = chan[p][2], .events = POLLIN };

	for (;;) {
		int r = poll(&pfd, 1, 250);

		if (r > 0)
			return recv_msg(chan[p][2]);
		if (r < 0 && errno != EINTR)
			return NULL;
		if (r == 0 && gone(procs[p].pid))
			return NULL;
	}
}

/* Wait until process pid has left (a zombie or gone: its mm is torn down). */
static int gone(pid_t pid)
{
	char path[64], buf[256], *paren;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = 0;
	paren = strrchr(buf, ')');
	return paren && (paren[2] == 'Z' || paren[2] == 'X');
}

static void wait_gone(pid_t pid)
{
	int i;

	for (i = 0; i < 100000 && !gone(pid); i++)
		usleep(200);
}

/* 0, or -1 with why set: the line cannot run on Linux. */
static int check_window(const struct mf_step *st, char *why)
{
	int i;
	long lo = -1, n = 1;
	char *end;

	for (i = 0; i < st->nargs; i++) {
		const struct mf_arg *a = &st->op->args[i];

		if (a->kind != 'n' && a->kind != 'w')
			continue;
		errno = 0;
		(void)strtoll(st->args[i], &end, 10);
		if (errno) {
			sprintf(why, "'%s' argument '%s' does not fit 64 bits", st->op->keyword, a->field);
			return -1;
		}
	}
	for (i = 0; i < st->nargs; i++) {
		const char *f = st->op->args[i].field;
		long v = num(st->args[i]);

		if (!strcmp(f, "n"))
			n = v;
		else if (st->op->args[i].kind == 'n')
			lo = lo < 0 || v > lo ? v : lo;
		if (st->op->args[i].kind == 'n' && v < 0) {
			sprintf(why, "'%s' argument '%s' is negative", st->op->keyword, f);
			return -1;
		}
	}
	if (lo >= 0 && (lo >= MF_WINDOW || n > MF_WINDOW - lo)) {
		sprintf(why, "'%s' range is outside the runner's window of 2^30 pages",
			st->op->keyword);
		return -1;
	}
	return 0;
}

/* The line's result into out; 1 if refused, 2 if the process was lost (why set). */
static int run_line(struct mf_step *st, char *out, size_t outlen, char *why)
{
	const char *k;
	int p, d = -1, reserved = -1;
	char *reply, msg[640];

	if (!st->op || st->thread[0]) {
		strcpy(why, "threads (Tn =, step, run) have no sequential counterpart: "
		       "replay --linux runs them as a stress race");
		return 1;
	}
	k = st->op->keyword;
	if (!mf_in_list(k, mf_linux_ops)) {
		sprintf(why, "op '%s' has no Linux counterpart", k);
		return 1;
	}
	if (!strcmp(k, "open") && strcmp(st->args[1], "mirror")) {
		sprintf(why, "open %s has no Linux counterpart (only mirror: test_hmm)", st->args[1]);
		return 1;
	}
	if (check_window(st, why))
		return 1;
	/* fork and open reserve their handle whether or not they succeed (spec §2) */
	if (!strcmp(k, "fork") || !strcmp(k, "open")) {
		int fork = k[0] == 'f';

		reserved = fork ? nprocs++ : ndevs++;
		if (reserved >= (fork ? MF_MAXP : MF_MAXD)) {
			strcpy(why, fork ? "too many processes" : "too many devices");
			return 1;
		}
		if (fork)
			procs[reserved].state = FAILED;
		else
			devs[reserved].state = FAILED;
	}
	if (st->op->args[0].kind == 'P') {
		p = atoi(st->args[0] + 1);
		if (p >= MF_MAXP || procs[p].state == UNUSED || procs[p].state == FAILED ||
		    p >= nprocs)
			return strcpy(out, "EINVAL"), 0;
		if (procs[p].state == DEAD)
			return strcpy(out, "ESRCH"), 0;
	} else {
		d = atoi(st->args[0] + 1);
		if (d >= ndevs || devs[d].state != LIVE)
			return strcpy(out, "EINVAL"), 0;
		p = devs[d].proc;
		if (procs[p].state == DEAD)
			return strcpy(out, "ESRCH"), 0;
	}
	if (!strcmp(k, "fork")) {
		int child = reserved;

		if (spawn(p, child))
			return snprintf(out, outlen, "%s", errname(errno)), 0;
		procs[child].state = LIVE;
		return snprintf(out, outlen, "P%d", child), 0;
	}
	if (!strcmp(k, "open")) {
		d = reserved;
		if (nmirrors >= MF_DMIRROR_PRIVATE_DEVICES) {
			sprintf(why, "a third mirror: 6.1's test_hmm has two device-private devices");
			return 1;
		}
		snprintf(msg, sizeof(msg), "open %d %d", d, nmirrors++);
	} else {
		snprintf(msg, sizeof(msg), "%s", st->canon);
	}
	if (send_msg(chan[p][1], !strcmp(k, "exit") ? "exit" : msg) ||
	    !(reply = recv_reply(p))) {
		strcpy(why, "lost the process (killed: see the kernel's reports)");
		return 2;
	}
	if (!strcmp(k, "open") && !strcmp(reply, "ok")) {
		devs[d].state = LIVE;
		devs[d].proc = p;
		snprintf(out, outlen, "D%d", d);
	} else {
		snprintf(out, outlen, "%s", reply);
	}
	if (!strcmp(k, "exit") && !strcmp(reply, "ok")) {
		procs[p].state = DEAD;
		wait_gone(procs[p].pid);
	}
	free(reply);
	return 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	long len;
	char *buf;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = malloc(len + 1);
	if (!buf || fread(buf, 1, len, f) != (size_t)len) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[len] = 0;
	return buf;
}

/* Iterate the lines of text (CR before LF dropped); returns the next line or NULL. */
static char *next_line(char **cursor)
{
	char *line = *cursor, *nl;

	if (!line || !*line)
		return NULL;
	nl = strchr(line, '\n');
	if (nl) {
		*nl = 0;
		*cursor = nl + 1;
		if (nl > line && nl[-1] == '\r')
			nl[-1] = 0;
	} else {
		*cursor = line + strlen(line);
	}
	return line;
}

static int parse_only(const char *path)
{
	char *text = slurp(path), *cur, *line, err[256];
	int lineno = 0, headers = 1;
	struct mf_step st;

	if (!text) {
		fprintf(stderr, "mfrun: %s: cannot read\n", path);
		return 2;
	}
	cur = text;
	while ((line = next_line(&cur))) {
		lineno++;
		if (lineno == 1) {
			if (strcmp(line, "# mirrorfuzz-trace 1")) {
				fprintf(stderr, "mfrun: %s:1: not a mirrorfuzz trace\n", path);
				return 2;
			}
			puts(line);
		} else if (headers && mf_is_header(line)) {
			char *v = strchr(line, ':') + 1, *e;

			while (isspace((unsigned char)*v))
				v++;
			e = v + strlen(v);
			while (e > v && isspace((unsigned char)e[-1]))
				*--e = 0;
			*strchr(line, ':') = 0;
			printf("%s: %s\n", line, v);
		} else if (headers = 0, mf_is_comment(line)) {
			puts(line);
		} else if (mf_is_blank(line)) {
			puts("");
		} else if (mf_parse_step(line, &st, err)) {
			fprintf(stderr, "mfrun: %s:%d: %s\n", path, lineno, err);
			return 2;
		} else {
			printf("%s%s%s\n", st.canon, st.result ? " => " : "", st.result ? st.result : "");
			free(st.result);
		}
	}
	free(text);
	return 0;
}

static double race_secs;	/* > 0: lines from the first `Tn =` on race (--race S) */

/* The process a racer line runs in, or -1. */
static int racer_proc(const struct mf_step *st)
{
	int h = atoi(st->args[0] + 1);

	if (st->op->args[0].kind == 'P')
		return h < nprocs && procs[h].state == LIVE ? h : -1;
	if (st->op->args[0].kind == 'D')
		return h < ndevs && devs[h].state == LIVE ? devs[h].proc : -1;
	return -1;
}

static void run_trace(const char *path)
{
	static char out[1 << 17], racers[8192];
	char *text = slurp(path), *cur, *line, err[256], why[256];
	int lineno = 0, i, racing = 0, rproc = -1, nracers = 0;
	struct mf_step st;

	racers[0] = 0;
	printf("# trace: %s\n", path);
	if (!text || strncmp(text, "# mirrorfuzz-trace 1", 20)) {
		printf("# end: %s error not a readable trace\n", path);
		return;
	}
	for (i = 0; i < MF_MAXP; i++)
		if (pipe(chan[i]) || pipe(chan[i] + 2)) {
			printf("# end: %s error cannot make pipes\n", path);
			return;
		}
	procs[0].state = spawn(-1, 0) ? FAILED : LIVE;
	nprocs = 1;
	cur = text;
	while ((line = next_line(&cur))) {
		if (++lineno == 1 || mf_is_comment(line) || mf_is_blank(line))
			continue;
		if (mf_parse_step(line, &st, err)) {
			printf("# end: %s error line %d: %s\n", path, lineno, err);
			return;
		}
		free(st.result);
		if (race_secs > 0 && (st.thread[0] || racing)) {
			int p;

			racing = 1;
			if (st.is_thread_cmd)
				continue;	/* step/run: the threads just loop */
			p = racer_proc(&st);
			if (p < 0 || (rproc >= 0 && p != rproc) ||
			    !mf_in_list(st.op->keyword, mf_linux_ops) ||
			    !strcmp(st.op->keyword, "fork") || !strcmp(st.op->keyword, "exit") ||
			    !strcmp(st.op->keyword, "open")) {
				printf("# end: %s refused line %d: a racer must be a Linux op of one "
				       "live process other than fork, exit or open\n", path, lineno);
				return;
			}
			if (++nracers > MF_RACERS) {
				printf("# end: %s refused line %d: more than %d racer lines\n", path,
				       lineno, MF_RACERS);
				return;
			}
			rproc = p;
			if (strlen(racers) + strlen(st.canon) + 2 < sizeof(racers))
				sprintf(racers + strlen(racers), "\n%s",
					st.thread[0] ? st.canon + strlen(st.thread) + 3 : st.canon);
			continue;
		}
		i = run_line(&st, out, sizeof(out), why);
		if (i) {
			printf("# end: %s %s line %d: %s\n", path, i == 1 ? "refused" : "error", lineno,
			       why);
			return;
		}
		printf("%s => %s\n", st.canon, out);
		fflush(stdout);
	}
	if (rproc >= 0) {
		char *msg = malloc(strlen(racers) + 64), *reply, *save = NULL, *l;

		sprintf(msg, "race %.3f%s", race_secs, racers);
		if (!msg || send_msg(chan[rproc][1], msg) || !(reply = recv_msg(chan[rproc][2]))) {
			printf("# end: %s error lost the racing process\n", path);
			return;
		}
		for (l = strtok_r(reply, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			printf(l[0] == '#' ? "%s\n" : "# race: %s\n", l);
		free(reply);
		free(msg);
	}
	for (i = 0; i < nprocs; i++)
		if (procs[i].state == LIVE)
			send_msg(chan[i][1], "quit");
	while (wait(NULL) > 0)
		;
	printf("# end: %s ok\n", path);
}

static long tainted(void)
{
	char buf[32] = "0";
	int fd = open("/proc/sys/kernel/tainted", O_RDONLY);

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = '0';
		close(fd);
	}
	return atol(buf);
}

/* Wait (up to 20 s) until no process of the trace (process group pgid) is left but
 * zombies.  The coordinator waits for P0 only: a forked Pk is reaped by nobody and
 * exits on its own after "quit" or the group's SIGKILL, and the next trace must not
 * start before it has: its exit closes its mirror files, and test_hmm's release of
 * any file of /dev/hmm_dmirrorN evicts every chunk of that device
 * (dmirror_fops_release -> dmirror_device_evict_chunk), moving the next trace's device
 * pages back to RAM and out of its mirror's table (SPEC Appendix D29). */
static void wait_group_gone(pid_t pgid)
{
	int i, left = 1;

	for (i = 0; i < 100000 && left; i++) {
		DIR *d = opendir("/proc");
		struct dirent *e;

		left = 0;
		while (d && !left && (e = readdir(d))) {
			char where[64], buf[512], *paren, state;
			int pgrp, fd;
			ssize_t n;

			if (e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			snprintf(where, sizeof(where), "/proc/%d/stat", atoi(e->d_name));
			fd = open(where, O_RDONLY);
			if (fd < 0)
				continue;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n <= 0)
				continue;
			buf[n] = 0;
			paren = strrchr(buf, ')');
			if (paren && sscanf(paren + 2, "%c %*d %d", &state, &pgrp) == 2 &&
			    pgrp == pgid && state != 'Z' && state != 'X')
				left = 1;
		}
		if (d)
			closedir(d);
		if (left)
			usleep(200);
	}
}

static int run_path(const char *path, int timeout)
{
	long taint_before = tainted();

	struct stat sb;
	pid_t pid;
	int st;

	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		struct dirent **names;
		int n = scandir(path, &names, NULL, alphasort), i, rc = 0;
		char full[4096];

		for (i = 0; i < n; i++) {
			size_t len = strlen(names[i]->d_name);

			if (len > 6 && !strcmp(names[i]->d_name + len - 6, ".trace")) {
				snprintf(full, sizeof(full), "%s/%s", path, names[i]->d_name);
				rc |= run_path(full, timeout);
			}
			free(names[i]);
		}
		free(names);
		return rc;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		alarm(timeout);
		run_trace(path);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	kill(-pid, SIGKILL);
	if ((tainted() & ~taint_before) & (1 << 7)) {	/* TAINT_DIE: an oops */
		printf("# stop: the kernel oopsed during %s\n", path);
		fflush(stdout);
		exit(3);
	}
	wait_group_gone(pid);
	if (!WIFEXITED(st)) {
		printf("# end: %s timeout\n", path);
		fflush(stdout);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1, rc = 0, timeout = 15;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "--parse-only")) {
		for (i = 2; i < argc; i++)
			rc |= parse_only(argv[i]);
		return rc;
	}
	while (i + 1 < argc && (!strcmp(argv[i], "--timeout") || !strcmp(argv[i], "--race"))) {
		if (!strcmp(argv[i], "--race"))
			race_secs = atof(argv[i + 1]);
		else
			timeout = atoi(argv[i + 1]);
		i += 2;
	}
	if (race_secs > 0 && timeout < race_secs + 30)
		timeout = race_secs + 30;
	if (i >= argc) {
		fprintf(stderr, "usage: mfrun [--parse-only | --timeout S] TRACE|DIR...\n");
		return 2;
	}
	for (; i < argc; i++)
		rc |= run_path(argv[i], timeout > 0 ? timeout : 15);
	return rc;
}
