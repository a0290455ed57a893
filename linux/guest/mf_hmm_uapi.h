/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mirrorfuzz's own copy of the test_hmm user interface, written from the ioctl
 * numbers and structure of Linux 6.1's lib/test_hmm_uapi.h (Debian
 * linux-source-6.1, 6.1.192), the kernel `mirrorfuzz kernel build` builds.
 * Only what the guest runner and the exported tests use.  In 6.1 the migrate
 * ioctl is HMM_DMIRROR_MIGRATE_TO_DEV (later kernels renamed it).
 */
#ifndef MF_HMM_UAPI_H
#define MF_HMM_UAPI_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* addr: the mirrored user address; ptr: the user buffer data is copied
 * to/from; npages: pages; cpages (out): pages copied; faults (out): device
 * faults the driver took. */
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
#define HMM_DMIRROR_MIGRATE_TO_SYS	_IOWR('H', 0x03, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_SNAPSHOT		_IOWR('H', 0x04, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_EXCLUSIVE		_IOWR('H', 0x05, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_CHECK_EXCLUSIVE	_IOWR('H', 0x06, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_RELEASE		_IOWR('H', 0x07, struct hmm_dmirror_cmd)

/* HMM_DMIRROR_SNAPSHOT: one byte per page in *ptr. */
enum {
	HMM_DMIRROR_PROT_ERROR			= 0xFF,
	HMM_DMIRROR_PROT_NONE			= 0x00,
	HMM_DMIRROR_PROT_READ			= 0x01,
	HMM_DMIRROR_PROT_WRITE			= 0x02,
	HMM_DMIRROR_PROT_PMD			= 0x04,
	HMM_DMIRROR_PROT_PUD			= 0x08,
	HMM_DMIRROR_PROT_ZERO			= 0x10,
	HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL	= 0x20,
	HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE	= 0x30,
	HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL	= 0x40,
	HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE	= 0x50,
};

/* Device files: /dev/hmm_dmirror0 and 1 are device-private memory (two
 * devices, each its own pgmap owner); 2 and 3 (device coherent) exist only
 * with the spm_addr_dev0/1 module parameters. */
#define MF_DMIRROR_PRIVATE_DEVICES 2

#endif /* MF_HMM_UAPI_H */
