"""Contracts (fuzz/contracts.py): which ops userspace may not run while
device work is in flight under the registration-cache contract, and how the
executor classifies what goes wrong after such an op."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import contracts, impls
from fuzz.executor import Settings, run_trace
from fuzz.trace import load_trace, parse_trace
from model.ops import ADDRESS_PAGES, Fork, Madvise, Mmap, Mprotect, Mremap, Munmap, Read

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "corpus" / "seeds" / "userptr_munmap_waits_for_active_job.trace"


def test_remapping_ops_and_their_ranges() -> None:
    assert contracts.remapped(Munmap(0, 3, 2)) == (0, [(3, 5)])
    assert contracts.remapped(Mprotect(1, 8, 4, "r")) == (1, [(8, 12)])
    assert contracts.remapped(Mremap(0, 10, 3, 100)) == (0, [(10, 13), (100, 103)])
    assert contracts.remapped(Mmap(0, 0, 8, "rw", "private", False)) == (0, [(0, 8)])
    assert contracts.remapped(Fork(2)) == (2, [(0, ADDRESS_PAGES)])
    assert contracts.remapped(Madvise(0, 0, 8, "dontneed")) is None  # the kernel's, in contract
    assert contracts.remapped(Read(0, 1)) is None


def test_userspace_breaks_only_the_registration_cache_contract() -> None:
    busy = {0: [(2, 6)]}
    def lookup(pid: int) -> list[tuple[int, int]]:
        return busy.get(pid, [])
    assert contracts.userspace_breaks("registration-cache", Munmap(0, 5, 4), lookup)
    assert contracts.userspace_breaks("registration-cache", Munmap(0, 6, 4), lookup) is None
    assert contracts.userspace_breaks("registration-cache", Munmap(1, 2, 4), lookup) is None
    assert contracts.userspace_breaks("registration-cache", Fork(0), lookup)
    assert contracts.userspace_breaks("hmm", Munmap(0, 5, 4), lookup) is None
    with pytest.raises(ValueError, match="unknown contract"):
        contracts.check_name("posix")


def test_munmap_during_an_active_job_breaks_the_registration_cache_contract() -> None:
    trace = load_trace(str(SEED))
    hmm = run_trace(trace, impls.sides("both"), Settings())
    cache = run_trace(trace, impls.sides("both"), Settings(contract="registration-cache"))
    assert hmm.broken is None and hmm.ok
    assert cache.broken is not None and cache.broken.op == "munmap" and cache.ok


def test_a_finding_after_a_contract_break_is_a_contract_violation() -> None:
    """With the userptr callback keeping its pins, the munmap during the job
    goes wrong: a finding under hmm, excused under registration-cache."""
    trace = load_trace(str(SEED))
    hmm = run_trace(trace, impls.sides("both"), Settings(mutant="userptr_keep_pins"))
    cache = run_trace(trace, impls.sides("both"),
                      Settings(mutant="userptr_keep_pins", contract="registration-cache"))
    assert hmm.finding is not None and hmm.finding.contract == "hmm"
    assert cache.finding is None
    assert [f.signature for f in cache.excused] == [hmm.finding.signature]


def test_without_a_break_a_finding_stays_a_finding_under_either_contract() -> None:
    text = ("# mirrorfuzz-trace 1\nmmap P0 0 4 rw private => ok\nwrite P0 0 5 => ok\n"
            "open P0 userptr => D0\nreg D0 0 1 rw => R0\nsubmit R0 read 0 1 => J0\n"
            "complete J0 => values 5\nmunmap P0 0 1 => ok\nsubmit R0 read 0 1 => EFAULT\n")
    for contract in contracts.CONTRACTS:
        verdict = run_trace(parse_trace(text), impls.sides("both"),
                            Settings(mutant="userptr_keep_pins", contract=contract))
        assert verdict.broken is None
        assert verdict.finding is not None, contract
        assert verdict.finding.contract == contract


# ------------------------------------------------------- contracts in campaigns


def test_the_atheris_target_reports_a_contract_violation_not_a_finding(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The worker's target judges under $MIRRORFUZZ_CONTRACT: the excused
    finding is a ``violation`` event for the coordinator, and nothing is raised."""
    from fuzz import codec, fuzz_trace
    from fuzz.campaign.workers import parse_tally

    trace = load_trace(str(SEED))
    monkeypatch.setattr(codec, "decode", lambda data: trace)
    monkeypatch.setenv(fuzz_trace.PROGRESS_ENV, "1")
    for name, value in (("mutant", "userptr_keep_pins"), ("contract", "registration-cache")):
        monkeypatch.setenv(fuzz_trace.ENV[name], value)
    config = fuzz_trace.TargetConfig.from_env()
    assert config.settings().contract == "registration-cache"
    fuzz_trace.configure(config)
    try:
        fuzz_trace.TestOneInput(b"")
        events = [parse_tally(line) for line in capsys.readouterr().out.splitlines()]
        expected = run_trace(trace, impls.sides("both"), Settings(mutant="userptr_keep_pins"))
        assert expected.finding is not None
        assert ("violation", expected.finding.signature) in events
        monkeypatch.setenv(fuzz_trace.ENV["contract"], "hmm")  # the same input is a finding
        fuzz_trace.configure(fuzz_trace.TargetConfig.from_env())
        with pytest.raises(fuzz_trace.TraceFinding):
            fuzz_trace.TestOneInput(b"")
    finally:
        fuzz_trace.configure(None)


def test_the_campaign_workers_judge_under_its_contract(tmp_path: Path) -> None:
    """Both workers' command lines carry the campaign's contract, and the
    Hypothesis engine's judge settings are made with it."""
    from fuzz.campaign.workers import atheris_command, hypothesis_command
    from fuzz.profiles import CAMPAIGN

    argv = hypothesis_command(tmp_path, 0, 1, mutant=None, contract="registration-cache",
                              db=None, observe_every=4, generation=0)
    assert argv[argv.index("--contract") + 1] == "registration-cache"
    _, env = atheris_command(tmp_path, 1, 1, mutant=None, contract="registration-cache",
                             rss_limit_mb=2048, timeout_s=60)
    assert env["MIRRORFUZZ_CONTRACT"] == "registration-cache"
    assert CAMPAIGN.settings(contract="registration-cache").contract == "registration-cache"
    assert CAMPAIGN.settings().contract == contracts.DEFAULT


def test_campaign_violations_are_tallied_recorded_and_reported(tmp_path: Path) -> None:
    from fuzz.campaign.config import CampaignConfig, config_from_json, save_config
    from fuzz.campaign.findings import Findings
    from fuzz.campaign.report import load_campaign, summary
    from fuzz.campaign.stats import StatsLog, read_stats, totals

    config = CampaignConfig(time_s=60, jobs=1, engine="hypothesis", seed=1,
                            contract="registration-cache")
    assert config_from_json(config.to_json()) == config
    old = {k: v for k, v in config.to_json().items() if k != "contract"}
    assert config_from_json(old).contract == "hmm"  # a campaign.json from before contracts
    with pytest.raises(ValueError, match="unknown contract"):
        config_from_json({**config.to_json(), "contract": "posix"})
    save_config(tmp_path, config)
    stats = StatsLog(tmp_path)
    findings = Findings(tmp_path, None, lambda kind, **f: stats.append(kind, 1.0, **f),
                        lambda text: None)
    for _ in range(3):
        findings.tally("violation", "violation/coherence/page")
    findings.tally("seen", "violation/seq_protocol/subscription")
    findings.record_seen(force=True)
    found = totals(read_stats(tmp_path).lines)
    assert found.tallies["violation"] == {"violation/coherence/page": 3}
    assert found.seen == {"violation/seq_protocol/subscription": 1}
    shown = dict(summary(load_campaign(tmp_path)))
    assert shown["contract"] == ("registration-cache: violation/coherence/page (3) judged "
                                 "contract violations, not findings")
