"""The report's files and formats: file modes of atomic writes, the HTML tables, the loss decomposition."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.presentation import html_table, page
from analysis.summaries import DECOMPOSITIONS, study_tables
from harness.files import TMP_SUFFIX, atomic_write, create_tmp, tmp_prefix
from harness.measures.diversity import decomposition
from harness.measures.metrics import EnsembleAccumulator, point_metrics


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_mode_of_open(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = tmp_path / "sub" / "table.csv"
        atomic_write(path, b"a,b\n")
        first = stat.S_IMODE(path.stat().st_mode)
        atomic_write(path, b"a,b\n1,2\n")  # replacing a file gives the new one the same mode
        assert (first, stat.S_IMODE(path.stat().st_mode)) == (mode, mode)
        assert path.read_bytes() == b"a,b\n1,2\n"
        assert not list(path.parent.glob(f"*{TMP_SUFFIX}"))
    finally:
        os.umask(old)


def test_a_dead_writers_temporary_file_is_removed_by_the_run_store(tmp_path):
    from harness.store.runs import RunStore

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    fd, mine = create_tmp(run, tmp_prefix("run.parquet"))
    os.close(fd)
    theirs = mine.rename(mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-")))
    fd, live = create_tmp(run, tmp_prefix("history.parquet"))
    os.close(fd)
    RunStore(tmp_path / "runs")
    assert not theirs.exists() and live.exists()  # a live writer's file is kept


def test_the_run_store_opens_while_another_process_moves_folders_away(tmp_path, monkeypatch):
    """`make -j2`: a sweep renamed its temporary folder away while another opened the store and
    looked for dead writers' files (FileNotFoundError from the scan, make exited 2)."""
    import shutil

    from harness.store import runs as store_module

    root = tmp_path / "runs"
    for name in ("r1", "r2", ".tmp-r3-host-1-abc"):
        (root / name).mkdir(parents=True)
    real = os.scandir

    def vanishing(path):
        if (
            not isinstance(path, int)
            and os.path.basename(path) in ("r2", ".tmp-r3-host-1-abc")
            and os.path.exists(path)
        ):
            shutil.rmtree(path)  # gone between the listing of the store and the scan of the folder
        return real(path)

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = []
    for folder in ("r1", ".claims", ".failed"):  # a dead writer's file in each place one can be left
        (root / folder).mkdir(exist_ok=True)
        fd, mine = create_tmp(root / folder, tmp_prefix("x.json"))
        os.close(fd)
        stale.append(mine.rename(mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))))
    monkeypatch.setattr(store_module.os, "scandir", vanishing)
    store_module.RunStore(root)
    assert (root / "r1").is_dir() and not (root / "r2").exists()
    assert not any(p.exists() for p in stale)  # and the other folders were still cleaned


def test_html_table_wraps_text_columns_and_scrolls_in_its_box():
    long_reason = (
        "too few seeds: the interval straddles the margin; about 37 replicates would decide it <if> the true value "
        "is the observed one"
    )
    df = pd.DataFrame(
        {
            "claim": ["C1", "C2"],
            "p (Holm)": [0.01234567, float("nan")],
            "95% interval": ["[0.1, 0.2]", "-"],
            "verdict": ["inconclusive", "supported"],
            "reason": [long_reason, ""],
        }
    )
    out = html_table(df, highlight="verdict", classes="t claims", wrap=("reason",))
    assert out.startswith("<div class='scroll'><table class='t claims'>") and out.endswith("</table></div>")
    assert "<th class='c-p-holm'>p (Holm)</th>" in out and "<td class='c-95-interval'>[0.1, 0.2]</td>" in out
    assert "<td class='c-p-holm'>0.01235</td>" in out and "<td class='c-p-holm'>-</td>" in out
    assert (
        "<td class='c-verdict inconclusive'>inconclusive</td>" in out
        and "<td class='c-verdict supported'>supported</td>" in out
    )
    assert (
        f"<td class='c-reason wrap'>{long_reason.replace('<', '&lt;').replace('>', '&gt;')}</td>" in out
    )  # whole, escaped
    css = page(out, "quick")
    assert "div.scroll{overflow-x:auto" in css and "td.wrap{white-space:normal;overflow-wrap:anywhere" in css


def test_html_table_breaks_an_estimate_cell_only_before_its_interval():
    out = html_table(pd.DataFrame({"nll": ["0.123 [0.111, 0.135]"], "method": ["dropout ensemble"]}))
    assert "<td class='c-nll est'>0.123 <span class='ci'>[0.111, 0.135]</span></td>" in out
    assert "<td class='c-method'>dropout ensemble</td>" in out
    assert "table.t td.est{white-space:normal} table.t span.ci{white-space:nowrap}" in page(out, "quick")


def _ensemble_rows(
    gen: torch.Generator, run_id: str, group: str, mode: str, ks: list[int], replicate: int, set_name: str
) -> list[tuple]:
    """Robustness `shift` rows of an average of random members at each k of `ks` on 30 examples of
    4 classes, measured as `harness.inference.robustness` measures them."""
    y = torch.randint(0, 4, (30,), generator=gen)
    acc = EnsembleAccumulator(30, 4)
    rows = []
    for k in range(1, max(ks) + 1):
        acc.add(3 * torch.randn(30, 4, generator=gen, dtype=torch.float64))
        if k in ks:
            m = point_metrics(acc.mean(), y, log_probs=acc.log_mean()) | decomposition(acc, y)
            rows += [
                (run_id, set_name, "none", 0.0, mode, k, metric, value, group, replicate) for metric, value in m.items()
            ]
    return rows


def test_loss_decomposition_rows_add_up():
    gen = torch.Generator().manual_seed(0)
    rows = []
    for r in range(3):
        for set_name in ("test", "rotation_90"):  # the table is of the test split alone
            for m in range(2):
                rows += _ensemble_rows(gen, f"d{r}{m}", "dropout", "mc_shared", [2, 4, 6], r, set_name)
                rows += [(f"d{r}{m}", set_name, "none", 0.0, "weight_scaled", 0, "nll", 9.0, "dropout", r)]
            rows += _ensemble_rows(gen, f"de{r}", "dropout", "ensemble", [2], r, set_name)
            rows += _ensemble_rows(gen, f"ne{r}", "no dropout", "ensemble", [2], r, set_name)
    shift = pd.DataFrame(
        rows, columns=["run_id", "set", "shift", "intensity", "mode", "k", "metric", "value", "group", "replicate"]
    )
    tables = study_tables("ensemble_vs_dropout", {"shift": shift})
    (table,) = [df for title, df in tables.items() if title.startswith("loss decomposition")]
    assert list(table.method) == [
        "deep ensemble",
        "subnetworks (k = M)",
        "subnetworks (equal compute)",
        "subnetworks (k = T)",
        "dropout ensemble",
    ]
    values = [c for c in table.columns if not c.endswith(("_ci_low", "_ci_high"))]
    assert values == [
        "method",
        "member_nll",
        "nll_gap",
        "nll_arithmetic",
        "ce_diversity",
        "nll_geometric",
        "member_brier",
        "brier_diversity",
        "brier",
        "disagreement",
        "pairwise_kl",
        "n",
        "interval",
    ]
    for loss, (member, diversity) in DECOMPOSITIONS.items():
        np.testing.assert_allclose(table[member] - table[diversity], table[loss], rtol=0, atol=1e-12)
        assert (table[diversity] > 0).all()
    # the two NLLs differ, so a table showing ce_diversity beside the arithmetic NLL would not add up
    assert (abs(table.member_nll - table.ce_diversity - table.nll_arithmetic) > 1e-3).all()
    assert (table.n == 3).all()


def _data_size_runs() -> pd.DataFrame:
    """A data_size runs table with every column the report's setup line and tables read."""
    rows = [
        (f"r{s}{w}{n}{p}", s, w, n, p, 0.1 + 0.001 * s - 0.02 * p * (1 + s / 10))
        for s in range(5)
        for w in (64, 256)
        for n in (100, 1000)
        for p in (0.0, 0.5)
    ]
    runs = pd.DataFrame(rows, columns=["run_id", "seed", "width", "train_size", "p_drop_hidden", "test_error"])
    return runs.assign(
        train_error=runs.test_error - 0.05,
        model="mlp",
        widths=runs.width.astype(str),
        epochs=3,
        dataset="digits",
        status="ok",
        wall_time_s=6.0,
    )


def test_report_of_a_dataset_names_its_setting_and_shows_adaptations_and_skips(tmp_path, monkeypatch, capsys):
    from analysis import report
    from analysis.tables import write

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    tables = tmp_path / "reports" / "quick-digits" / "tables"
    write(
        {"runs": _data_size_runs()},
        tables / "data_size",
        {"dataset": "digits", "skipped": None, "notes": ["training sizes capped at <1000>"]},
    )
    write(
        {"runs": pd.DataFrame({"run_id": pd.Series(dtype=str)})},
        tables / "placement",
        {"dataset": "digits", "skipped": "convolutions need images; digits are flat features", "notes": []},
    )
    figures = tmp_path / "figures" / "quick-digits"
    figures.mkdir(parents=True)
    for fig in ("data_size", "placement"):  # the skipped study's figure is a placeholder panel
        (figures / f"{fig}.png").write_bytes(fig.encode())
    assert report.main(["--profile", "quick", "--dataset", "digits"]) == 0
    assert capsys.readouterr().out.startswith("reports/quick-digits/: claims.csv, data_size__")
    page = (tmp_path / "reports" / "quick-digits" / "index.html").read_text()
    assert "<h1>Dropout harness report <small>(quick-digits: quick profile on digits)</small></h1>" in page
    assert "Setting: quick-digits, the quick profile&#x27;s study design; dataset: digits." in page
    data_size = page[page.index("<h2 id='data_size'>") : page.index("<h2 id='placement'>")]
    assert data_size.index("<li>training sizes capped at &lt;1000&gt;</li>") < data_size.index(
        "<p class='setup'>Setup: data: digits"
    )
    assert "<h3>test error by size, width and dropout</h3>" in data_size and "alt='data_size'" in data_size
    placement = page[page.index("<h2 id='placement'>") :]
    assert (
        "<p class='setup skipped'>Skipped on digits: convolutions need images; digits are flat features</p>"
        in placement
    )
    assert "Setup:" not in placement and "<h3>" not in placement and "<figure>" not in placement
    assert (
        "Skipped on digits: convolutions need images"
        in (tmp_path / "reports" / "quick-digits" / "report.md").read_text()
    )
    claims = pd.read_csv(tmp_path / "reports" / "quick-digits" / "claims.csv")
    assert set(claims.study) == {"data_size"}
    # without --dataset: the profile's own folder, which has no tables here
    with pytest.raises(
        SystemExit, match=r"no tables under .*reports/quick/tables; run `make tables PROFILE=quick` first"
    ):
        report.build("quick")
    with pytest.raises(SystemExit, match="run `make tables PROFILE=quick DATASET=mnist1d` first"):
        report.build("quick", "mnist1d")
