/* SPDX-License-Identifier: GPL-2.0 */
/* mirrorfuzz trace text parser (docs/spec.md §2), shared by the guest runner
 * (mfrun.c) and nothing else: one step line into canonical tokens.
 *
 * A step line is `[Tn =] op ARG... [=> RESULT]` or `step X` / `run X`.  The
 * op's arity and argument kinds come from optable.h (generated from the
 * Python declarations).  Integers are -?[0-9]{1,100}, printed back without
 * leading zeros (as Python's int() does); handles are a letter and a natural
 * number without leading zeros.  Canonical text: single spaces, " => " before
 * the result. */
#ifndef MF_PARSE_H
#define MF_PARSE_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optable.h"

#define MF_MAXTOK 8192

struct mf_step {
	char thread[112];		/* "Tn" of `Tn = op`, or "" */
	int is_thread_cmd;		/* 1: step X, 2: run X */
	const struct mf_opdef *op;	/* the op, or NULL for step/run */
	int nargs;			/* op arguments given */
	char *args[8];			/* canonical argument tokens */
	char canon[512];		/* canonical text without the result */
	char argbuf[512];		/* the argument tokens args[] point into */
	char *result;			/* canonical result text (malloc), or NULL */
};


static int mf_is_int(const char *t)
{
	size_t n;

	if (*t == '-')
		t++;
	n = strlen(t);
	if (n < 1 || n > 100)
		return 0;
	for (; *t; t++)
		if (*t < '0' || *t > '9')
			return 0;
	return 1;
}

/* canonical integer text of t (assumed mf_is_int) into out */
static void mf_norm_int(const char *t, char *out)
{
	int neg = *t == '-';

	if (neg)
		t++;
	while (t[0] == '0' && t[1])
		t++;
	if (t[0] == '0')
		neg = 0;
	sprintf(out, "%s%s", neg ? "-" : "", t);
}

static int mf_is_nat_name(const char *t)
{
	size_t n = strlen(t);

	if (n < 1 || n > 100 || (t[0] == '0' && n > 1))
		return 0;
	for (; *t; t++)
		if (*t < '0' || *t > '9')
			return 0;
	return 1;
}

static int mf_is_handle(const char *t, char letter)
{
	return t[0] == letter && mf_is_nat_name(t + 1);
}

static int mf_is_thread(const char *t, const char *letters)
{
	return t[0] && strchr(letters, t[0]) && mf_is_nat_name(t + 1);
}

static int mf_in_choices(const char *t, const char *choices)
{
	size_t n = strlen(t);
	const char *p = choices;

	while (*p) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);

		if (len == n && !strncmp(p, t, n))
			return 1;
		p += len + (bar ? 1 : 0);
	}
	return 0;
}

static int mf_split(char *s, char **tok, int max)
{
	int n = 0;
	char *save = NULL, *t;

	for (t = strtok_r(s, " \t\v\f", &save); t; t = strtok_r(NULL, " \t\v\f", &save)) {
		if (n == max)
			return -1;
		tok[n++] = t;
	}
	return n;
}

static const char *const mf_snap_words[] = {
	"error", "none", "zero", "r", "w", "r+pmd", "w+pmd", "dev-r", "dev-w", NULL
};
static const char *const mf_errnos[] = {
	"EINVAL", "ENOMEM", "EFAULT", "EPERM", "EBUSY", "ENOENT", "ESRCH", NULL
};

static int mf_in_list(const char *t, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(t, *list))
			return 1;
	return 0;
}

/* Canonical op-result of tok[0..n) appended to out; -1 (err set) if bad. */
static int mf_op_result(char **tok, int n, char *out, char *err)
{
	char num[112];
	int i;

	if (!strcmp(tok[0], "ok")) {
		if (n == 1) {
			strcat(out, "ok");
			return 0;
		}
		if (n == 3 && !strcmp(tok[1], "faults") && mf_is_int(tok[2]) && tok[2][0] != '-') {
			mf_norm_int(tok[2], num);
			sprintf(out + strlen(out), "ok faults %s", num);
			return 0;
		}
		strcpy(err, "expected 'ok' or 'ok faults F'");
		return -1;
	}
	if (!strcmp(tok[0], "values") || !strcmp(tok[0], "snap")) {
		int values = tok[0][0] == 'v', last = n;

		if (values && n >= 4 && !strcmp(tok[n - 2], "faults"))
			last = n - 2;
		if (last < 2) {
			sprintf(err, "'%s' needs at least one %s", tok[0], values ? "integer" : "word");
			return -1;
		}
		strcat(out, tok[0]);
		for (i = 1; i < n; i++) {
			int is_faults = values && i == last;

			strcat(out, " ");
			if (is_faults) {
				strcat(out, "faults");
				continue;
			}
			if (values && !mf_is_int(tok[i])) {
				strcpy(err, "a value must be an integer");
				return -1;
			}
			if (!values && !mf_in_list(tok[i], mf_snap_words)) {
				strcpy(err, "unknown snap word");
				return -1;
			}
			if (values) {
				mf_norm_int(tok[i], num);
				strcat(out, num);
			} else {
				strcat(out, tok[i]);
			}
		}
		return 0;
	}
	if (n != 1) {
		strcpy(err, "unexpected words after the result");
		return -1;
	}
	if (mf_in_list(tok[0], mf_errnos) || !strcmp(tok[0], "SIGSEGV") ||
	    mf_is_handle(tok[0], 'P') || mf_is_handle(tok[0], 'D') ||
	    mf_is_handle(tok[0], 'R') || mf_is_handle(tok[0], 'J')) {
		strcat(out, tok[0]);
		return 0;
	}
	if (mf_is_int(tok[0])) {
		mf_norm_int(tok[0], num);
		strcat(out, num);
		return 0;
	}
	strcpy(err, "unknown result");
	return -1;
}

static int mf_result(char *text, struct mf_step *st, char *err)
{
	static __thread char *tok[MF_MAXTOK];
	size_t len = strlen(text);
	int n = mf_split(text, tok, MF_MAXTOK);
	char *out;

	if (n <= 0) {
		strcpy(err, n ? "result too long" : "bad result: empty result");
		return -1;
	}
	out = calloc(1, len + 64 + (size_t)n * 2);
	if (!out) {
		strcpy(err, "out of memory");
		return -1;
	}
	st->result = out;
	if (!strcmp(tok[0], "yield") && n == 1) {
		strcpy(out, "yield");
	} else if (!strcmp(tok[0], "blocked")) {
		if (n == 1)
			strcpy(out, "blocked");
		else if (n == 2 && mf_is_thread(tok[1], "TL"))
			sprintf(out, "blocked %s", tok[1]);
		else {
			strcpy(err, "bad result: expected 'blocked' or 'blocked THREAD'");
			return -1;
		}
	} else if (!strcmp(tok[0], "done")) {
		if (n == 1) {
			strcpy(err, "bad result: 'done' needs an op result");
			return -1;
		}
		strcpy(out, "done ");
		if (mf_op_result(tok + 1, n - 1, out, err))
			return -1;
	} else if (mf_op_result(tok, n, out, err)) {
		return -1;
	}
	return 0;
}

static const struct mf_opdef *mf_find_op(const char *keyword)
{
	size_t i;

	for (i = 0; i < MF_NOPS; i++)
		if (!strcmp(mf_ops[i].keyword, keyword))
			return &mf_ops[i];
	return NULL;
}

/* Parse one step line (modified in place).  0, or -1 with err set. */
static int mf_parse_step(char *line, struct mf_step *st, char *err)
{
	char *arrow = strstr(line, "=>"), *content = line, *eq;
	char *tok[16];
	int n, i, required = 0;

	memset(st, 0, sizeof(*st));
	if (arrow) {
		*arrow = 0;
		if (mf_result(arrow + 2, st, err))
			return -1;
	}
	eq = strchr(content, '=');
	if (eq) {
		char *th[2];

		*eq = 0;
		if (mf_split(content, th, 2) != 1 || !mf_is_thread(th[0], "T")) {
			strcpy(err, "expected a thread Tn before '='");
			return -1;
		}
		snprintf(st->thread, sizeof(st->thread), "%s", th[0]);
		content = eq + 1;
	}
	n = mf_split(content, tok, 16);
	if (n <= 0) {
		strcpy(err, n ? "too many arguments" : "expected an op");
		return -1;
	}
	if (!strcmp(tok[0], "step") || !strcmp(tok[0], "run")) {
		if (st->thread[0] || n != 2 || !mf_is_thread(tok[1], "TL")) {
			sprintf(err, "'%s' takes one thread Tn or Li", tok[0]);
			return -1;
		}
		st->is_thread_cmd = tok[0][0] == 's' ? 1 : 2;
		snprintf(st->canon, sizeof(st->canon), "%s %s", tok[0], tok[1]);
		return 0;
	}
	st->op = mf_find_op(tok[0]);
	if (!st->op) {
		snprintf(err, 200, "unknown op '%.40s'", tok[0]);
		return -1;
	}
	for (i = 0; i < st->op->nargs; i++)
		required += !st->op->args[i].optional;
	if (n - 1 < required || n - 1 > st->op->nargs) {
		sprintf(err, "'%s' takes %d to %d arguments, got %d", st->op->keyword, required,
			st->op->nargs, n - 1);
		return -1;
	}
	st->nargs = n - 1;
	if (st->thread[0])
		sprintf(st->canon, "%s = %s", st->thread, st->op->keyword);
	else
		strcpy(st->canon, st->op->keyword);
	for (i = 0; i < n - 1; i++) {
		const struct mf_arg *a = &st->op->args[i];
		char *t = tok[i + 1], *dst = st->canon + strlen(st->canon);
		int ok;

		*dst++ = ' ';
		if (strchr("PDRJ", a->kind))
			ok = mf_is_handle(t, a->kind);
		else if (a->kind == 'c' || a->kind == 'f')
			ok = mf_in_choices(t, a->choices);
		else
			ok = mf_is_int(t);
		if (!ok) {
			snprintf(err, 200, "'%s' argument '%s': bad value '%.40s'", st->op->keyword,
				 a->field, t);
			return -1;
		}
		if (a->kind == 'n' || a->kind == 'w')
			mf_norm_int(t, dst);
		else
			strcpy(dst, t);
		st->args[i] = dst;
	}
	/* args point into canon: re-split copies so they survive */
	strcpy(st->argbuf, st->canon);
	n = mf_split(st->argbuf + (st->thread[0] ? strlen(st->thread) + 3 : 0), tok, 16);
	for (i = 0; i < st->nargs; i++)
		st->args[i] = tok[i + 1];
	return 0;
}

static int mf_is_header(const char *line)
{
	static const char *const keys[] = { "frames", "device-frames", "title", "found-by",
					    "signature", "driver", NULL };
	const char *colon;
	size_t n;
	int i;

	if (strncmp(line, "# ", 2))
		return 0;
	colon = strchr(line + 2, ':');
	if (!colon)
		return 0;
	n = (size_t)(colon - line - 2);
	for (i = 0; keys[i]; i++)
		if (strlen(keys[i]) == n && !strncmp(line + 2, keys[i], n))
			return 1;
	return 0;
}

static int mf_is_comment(const char *line)
{
	while (*line == ' ' || *line == '\t')
		line++;
	return *line == '#';
}

static int mf_is_blank(const char *line)
{
	for (; *line; line++)
		if (!isspace((unsigned char)*line))
			return 0;
	return 1;
}

#endif /* MF_PARSE_H */
