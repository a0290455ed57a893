"""Value provenance (``fuzz.linux.provenance``): which results of a stress race are
impossible, judged on the host from the trace; no kernel needed."""

from __future__ import annotations

from fuzz.linux import provenance
from fuzz.linux.replay import parse_output, print_race, race_verdict
from fuzz.trace import parse_trace

D15 = """# mirrorfuzz-trace 1
open P0 mirror
mmap P0 0 128 rw private
write_range P0 0 128 1 1
T1 = madvise P0 0 128 dontneed
migrate_to_dev D0 0 128
dread D0 0 128
snapshot D0 0 4
T2 = write_range P0 0 128 1 1
"""


def _seen(*items: tuple[int, str, int, int, int | None]) -> provenance.RaceReport:
    report = provenance.RaceReport()
    for racer, source, page, word, count in items:
        report.seen[(racer, source, page, word)] = count
    return report


def test_racers_and_prefix_follow_the_guest() -> None:
    trace = parse_trace(D15)
    assert [str(line.action.__class__.__name__) for line in provenance.prefix(trace)] == [
        "Open", "Mmap", "WriteRange"]
    assert [provenance.reads_words(line) for line in provenance.racers(trace)] == [
        False, True, True, False, False]


def test_a_read_of_a_written_word_is_possible() -> None:
    trace = parse_trace(D15)
    # racer 2 is the dread: page 3 holds 4 (write_range x=1 stride=1) or 0
    assert provenance.judge(trace, _seen((2, "value", 3, 4, 10), (2, "value", 3, 0, 5))) == []
    assert provenance.judge(trace, _seen((1, "readback", 127, 128, 1))) == []


def test_an_unwritten_nonzero_word_is_impossible() -> None:
    trace = parse_trace(D15)
    found = provenance.judge(trace, _seen((2, "value", 3, 999, 7)))
    assert len(found) == 1
    bad = found[0]
    assert (bad.racer, bad.line, bad.lineno, bad.count) == (2, "dread D0 0 128", 7, 7)
    assert "page 3 gave 999 x7 (written there: 0, 4)" in bad.what


def test_a_word_of_another_page_is_impossible_per_page() -> None:
    """Page 3 holding page 2's stamp (the prototype's 'impossible device data')."""
    trace = parse_trace(D15)
    found = provenance.judge(trace, _seen((1, "readback", 3, 3, 2), (1, "readback", 4, 3,
                                                                        None)))
    assert len(found) == 1 and found[0].count is None and "read-back" in found[0].what
    assert "2 impossible" in found[0].what


def test_the_rule_applies_per_racer_line() -> None:
    """Each racer line is judged on its own results; a writer is never judged."""
    trace = parse_trace(D15)
    found = provenance.judge(trace, _seen((2, "value", 0, 1, 3), (1, "readback", 5, -8, 1),
                                          (4, "value", 9, 12345, 1)))
    assert [(b.racer, b.line) for b in found] == [(1, "migrate_to_dev D0 0 128")]


def test_mremap_falls_back_to_any_page() -> None:
    trace = parse_trace("# mirrorfuzz-trace 1\nmmap P0 0 8 rw private\n"
                        "write_range P0 0 4 10 5\nmremap P0 0 4 100\nT1 = read_range P0 100 4\n")
    bound = provenance.allowed(trace)
    assert not bound.per_page
    assert bound.allows(100, 25) and bound.allows(7, 10) and not bound.allows(100, 11)
    assert provenance.judge(trace, _seen((0, "value", 102, 15, 1))) == []


def test_words_wrap_like_the_guest() -> None:
    top = (1 << 63) - 1
    trace = parse_trace(f"# mirrorfuzz-trace 1\nmmap P0 0 8 rw private\n"
                        f"T1 = dwrite D0 0 3 {top} 1\nT2 = read_range P0 0 3\n")
    bound = provenance.allowed(trace)
    assert bound.allows(1, -(1 << 63)) and bound.allows(2, -(1 << 63) + 1)
    run = provenance._Run(0, 3, top, 1)
    assert run.anywhere(-(1 << 63) + 1) and not run.anywhere(5)
    assert provenance._Run(0, 4, 0, 2).anywhere(6)
    assert not provenance._Run(0, 4, 0, 2).anywhere(7)
    assert not provenance._Run(0, 3, 0, 2).anywhere(6)


def test_prefix_reads_count_as_written() -> None:
    trace = parse_trace("# mirrorfuzz-trace 1\nmmap P0 0 8 rw private\nread_range P0 0 2\n"
                        "T1 = read P0 1\n")
    assert provenance.judge(trace, _seen((0, "value", 1, 77, 1)), ["ok", "values 0 77"]) == []
    assert len(provenance.judge(trace, _seen((0, "value", 1, 77, 1)), ["ok", "values 0 0"]))


def test_migrate_count_beyond_the_range_is_impossible() -> None:
    trace = parse_trace(D15)
    report = provenance.parse(
        ["madvise P0 0 128 dontneed: 9 runs: ok x9,",
         "migrate_to_dev D0 0 128: 5 runs: 128 x3, 129 x1, ENOENT x1,"], [], [])
    found = provenance.judge(trace, report)
    assert [(b.what, b.count) for b in found] == [("count 129", 1)]


def test_write_only_racers_are_judged_by_reports_only() -> None:
    trace = parse_trace("# mirrorfuzz-trace 1\nmmap P0 0 8 rw private\n"
                        "T1 = write P0 1 5\nT2 = madvise P0 0 8 dontneed\n")
    note = provenance.coverage_note(trace, provenance.RaceReport())
    assert note == "no racer reads a word: judged by kernel reports only"


def test_parse_the_guest_lines(tmp_path: object) -> None:
    """The runner's race lines, as ``parse_output`` collects them, into a verdict."""
    path = "/r/00000.trace"
    out = "\n".join([
        f"# trace: {path}", "open P0 mirror => D0", "mmap P0 0 128 rw private => ok",
        "write_range P0 0 128 1 1 => ok",
        "# race-seen: 2 value 0 1", "# race-seen: 1 readback 3 3", "# race-seen: 4 capped",
        "# race: madvise P0 0 128 dontneed: 10 runs: ok x10,", "# race-words: 0 end 0 0",
        "# race: migrate_to_dev D0 0 128: 4 runs: 128 x4,",
        "# race-words: 1 readback 3:3:2 0:1:4 3:4:2", "# race-words: 1 end 3 0",
        "# race: dread D0 0 128: 6 runs: values x6,",
        "# race-words: 2 value 0:1:6", "# race-words: 2 end 1 0",
        f"# end: {path} ok", ""])
    run = parse_output(out)[path]
    assert run.race_seen == ["2 value 0 1", "1 readback 3 3", "4 capped"]
    assert run.race_words[1] == "1 readback 3:3:2 0:1:4 3:4:2"
    report = provenance.parse(run.races, run.race_seen, run.race_words)
    assert report.seen[(1, "readback", 3, 3)] == 2 and report.capped == {4}
    assert report.complete == {0, 1, 2} and report.summaries[1].kinds == {"128": 4}
    trace = parse_trace(D15, path)
    verdict = race_verdict(trace, run, [], 60.0)
    assert verdict.confirmed and len(verdict.impossible) == 1
    import io

    text = io.StringIO()
    print_race(verdict, text)
    assert ("impossible result of racer `migrate_to_dev D0 0 128` (trace line 6; seen 2 "
            "times)") in text.getvalue()
    assert "CONFIRMED (0 kernel reports, 1 racer lines with impossible results, in 20 op " \
        "runs)" in text.getvalue()


def test_a_cut_run_keeps_what_was_seen() -> None:
    """A panic before the summary: the race-seen lines still judge, counts unknown."""
    path = "/r/00000.trace"
    out = (f"# trace: {path}\nopen P0 mirror => D0\n# race-seen: 2 value 5 77\n")
    run = parse_output(out)[path]
    verdict = race_verdict(parse_trace(D15, path), run, ["BUG: KASAN: use-after-free"], 9.0)
    assert verdict.confirmed and verdict.impossible[0].count is None
    assert verdict.note and "ended before the summary" in verdict.note
