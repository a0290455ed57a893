// SPDX-License-Identifier: GPL-2.0
/*
 * hmm-race: stress dmirror_migrate_to_device() (lib/test_hmm.c, 6.1) against a
 * concurrent madvise(MADV_DONTNEED) on the same range.
 *
 * Hypothesis (from the mirrorfuzz model): dmirror_migrate_finalize_and_map()
 * stores the migrated device pages in the mirror table without an
 * mmu_interval_read_begin()/read_retry() check; if MADV_DONTNEED zaps the
 * migration entries between migrate_vma_setup() and migrate_vma_finalize(),
 * the device page is freed by migrate_vma_finalize() while the mirror table
 * still points at its backing page -> use-after-free / stale mirror entry.
 *
 * Thread A: loop HMM_DMIRROR_MIGRATE_TO_DEV over the range.
 * Thread B: loop madvise(MADV_DONTNEED) on the range, then re-touch every page
 *           with a fresh generation stamp.
 * After each round (both threads stopped) HMM_DMIRROR_READ the range and
 * compare with the CPU's view; any difference is "impossible" for a correct
 * mirror. Thread A also checks the device data each MIGRATE_TO_DEV returns:
 * every page must be all-zero or carry its own index stamp (B writes
 * p[0] = gen<<32|i, p[1] = ~p[0]); anything else means the mirror read a
 * page that no longer belongs to this range. Usage: hmm-race [seconds=60] [npages=128] [ops_per_round=64]
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include "mf_hmm_uapi.h"	/* 6.1 lib/test_hmm_uapi.h, as mirrorfuzz writes it */

static unsigned long npages = 128, ops = 64, psz;
static char *buf;		/* CPU range */
static char *mirror_a;		/* bounce for thread A */
static int fd;
static pthread_barrier_t bar;
static volatile int stop;
static volatile unsigned long gen;
static unsigned long n_mig_badpage, n_mig, n_mig_err[4], n_dontneed, n_rounds, n_bad_rounds,
		     n_bad_pages, n_read_err;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int dcmd(unsigned long req, void *addr, void *ptr, unsigned long n,
		struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)addr,
				       .ptr = (uintptr_t)ptr, .npages = n };
	int ret;
	do { ret = ioctl(fd, req, &cmd); } while (ret && errno == EINTR);
	if (out) *out = cmd;
	return ret ? -errno : 0;
}

static void touch(unsigned long g)
{
	for (unsigned long i = 0; i < npages; i++) {
		uint64_t *p = (uint64_t *)(buf + i * psz);
		p[0] = (g << 32) | i;
		p[1] = ~p[0];
	}
}

static void *thread_a(void *arg)
{
	(void)arg;
	while (1) {
		pthread_barrier_wait(&bar);
		if (stop) break;
		for (unsigned long k = 0; k < ops; k++) {
			int r = dcmd(HMM_DMIRROR_MIGRATE_TO_DEV, buf, mirror_a, npages, NULL);
			n_mig++;
			if (r == -ENOENT) n_mig_err[0]++;
			else if (r == -EINVAL) n_mig_err[1]++;
			else if (r == -EBUSY) n_mig_err[2]++;
			else if (r) n_mig_err[3]++;
			if (r == 0)	/* device view returned by the ioctl itself */
				for (unsigned long i = 0; i < npages; i++) {
					uint64_t *d = (uint64_t *)(mirror_a + i * psz);
					int zero = d[0] == 0 && d[1] == 0;
					if (!zero && ((uint32_t)d[0] != i || (uint32_t)d[1] != (uint32_t)~i)) {
						if (n_mig_badpage++ < 8)
							printf("migrate#%lu page %lu: impossible device data %016llx %016llx\n",
							       n_mig, i, (unsigned long long)d[0], (unsigned long long)d[1]);
					}
				}
		}
		pthread_barrier_wait(&bar);
	}
	return NULL;
}

static void *thread_b(void *arg)
{
	(void)arg;
	while (1) {
		pthread_barrier_wait(&bar);
		if (stop) break;
		for (unsigned long k = 0; k < ops; k++) {
			if (madvise(buf, npages * psz, MADV_DONTNEED)) { perror("madvise"); exit(2); }
			n_dontneed++;
			touch(++gen);
		}
		pthread_barrier_wait(&bar);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 60;
	pthread_t ta, tb;
	char *rd;
	double t0, last;

	if (argc > 2) npages = strtoul(argv[2], NULL, 0);
	if (argc > 3) ops = strtoul(argv[3], NULL, 0);
	psz = sysconf(_SC_PAGE_SIZE);
	fd = open("/dev/hmm_dmirror0", O_RDWR);
	if (fd < 0) { perror("open /dev/hmm_dmirror0"); return 1; }
	buf = mmap(NULL, npages * psz, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mirror_a = malloc(npages * psz);
	rd = malloc(npages * psz);
	if (buf == MAP_FAILED || !mirror_a || !rd) { perror("alloc"); return 1; }
	touch(gen);
	pthread_barrier_init(&bar, NULL, 3);
	pthread_create(&ta, NULL, thread_a, NULL);
	pthread_create(&tb, NULL, thread_b, NULL);
	printf("hmm-race: npages=%lu ops/round=%lu duration=%.0fs\n", npages, ops, secs);
	fflush(stdout);
	t0 = last = now();
	while (now() - t0 < secs) {
		pthread_barrier_wait(&bar);	/* start round */
		pthread_barrier_wait(&bar);	/* round done, threads parked */
		n_rounds++;
		/* Quiescent: the mirror's view must equal the CPU's view. */
		memset(rd, 0xa5, npages * psz);
		int r = dcmd(HMM_DMIRROR_READ, buf, rd, npages, NULL);
		if (r) { n_read_err++; printf("round %lu: READ failed %d\n", n_rounds, r); }
		else {
			unsigned long bad = 0;
			for (unsigned long i = 0; i < npages; i++) {
				if (memcmp(rd + i * psz, buf + i * psz, psz)) {
					if (bad < 4) {
						uint64_t *d = (uint64_t *)(rd + i * psz);
						uint64_t *c = (uint64_t *)(buf + i * psz);
						printf("round %lu page %lu: mirror %016llx %016llx cpu %016llx %016llx\n",
						       n_rounds, i, (unsigned long long)d[0], (unsigned long long)d[1],
						       (unsigned long long)c[0], (unsigned long long)c[1]);
					}
					bad++;
				}
			}
			if (bad) { n_bad_rounds++; n_bad_pages += bad; }
		}
		if (now() - last > 10) {
			last = now();
			printf("hmm-race: t=%.0fs rounds=%lu migrate=%lu (ENOENT %lu EINVAL %lu EBUSY %lu other %lu) dontneed=%lu bad_rounds=%lu\n",
			       last - t0, n_rounds, n_mig, n_mig_err[0], n_mig_err[1], n_mig_err[2], n_mig_err[3],
			       n_dontneed, n_bad_rounds);
			fflush(stdout);
		}
	}
	stop = 1;
	pthread_barrier_wait(&bar);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	printf("hmm-race: DONE %.1fs rounds=%lu migrate_ioctls=%lu (ENOENT %lu EINVAL %lu EBUSY %lu other %lu) dontneed=%lu read_err=%lu bad_rounds=%lu bad_pages=%lu bad_migrate_pages=%lu\n",
	       now() - t0, n_rounds, n_mig, n_mig_err[0], n_mig_err[1], n_mig_err[2], n_mig_err[3],
	       n_dontneed, n_read_err, n_bad_rounds, n_bad_pages, n_mig_badpage);
	return (n_bad_rounds || n_mig_badpage) ? 3 : 0;
}
