// SPDX-License-Identifier: GPL-2.0
/* mirrorfuzz guest /init (after ../shared/kernel/init.c of the prototype).
 *
 * Mounts proc, sysfs, devtmpfs, tmpfs on /tmp and debugfs; reserves 4 hugetlb
 * pages; then runs each line of /commands (words separated by blanks) in turn
 * with stdin /dev/null and stdout/stderr on /dev/ttyS1 (the host's "output"
 * file, never mixed with kernel messages on ttyS0).  Around each command it
 * writes "MFINIT: begin N CMD" and "MFINIT: end N status S" to ttyS1 and to
 * /dev/kmsg, so console reports can be attributed.  Then it reboots, which
 * qemu -no-reboot turns into an exit. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void wr(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	if (fd >= 0) {
		if (write(fd, val, strlen(val)) < 0)
			perror(path);
		close(fd);
	}
}

static void mark(int out, const char *fmt, ...)
{
	char buf[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	if (write(out, buf, n) < 0)
		return;
	wr("/dev/kmsg", buf);
}

int main(void)
{
	static char line[4096];
	char *argv[64];
	FILE *cmds;
	int out, null, n = 0;

	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	wr("/proc/sys/vm/nr_hugepages", "4");
	out = open("/dev/ttyS1", O_WRONLY | O_NOCTTY);
	if (out < 0)
		out = open("/dev/console", O_WRONLY | O_NOCTTY);
	null = open("/dev/null", O_RDONLY);
	cmds = fopen("/commands", "r");
	while (cmds && fgets(line, sizeof(line), cmds)) {
		int argc = 0, st = -1;
		char *tok, *save = NULL;
		pid_t pid;

		line[strcspn(line, "\n")] = 0;
		for (tok = strtok_r(line, " \t", &save); tok && argc < 63;
		     tok = strtok_r(NULL, " \t", &save))
			argv[argc++] = tok;
		argv[argc] = NULL;
		if (!argc)
			continue;
		mark(out, "MFINIT: begin %d %s\n", n, argv[0]);
		pid = fork();
		if (pid == 0) {
			dup2(null, 0);
			dup2(out, 1);
			dup2(out, 2);
			execv(argv[0], argv);
			perror("execv");
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, &st, 0);
		mark(out, "MFINIT: end %d status %d\n", n,
		     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		n++;
	}
	mark(out, "MFINIT: done %d\n", n);
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
