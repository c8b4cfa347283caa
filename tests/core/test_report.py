"""The run report with pictures, RUN/report/index.html: made after every run, rebuilt by
``deepclust report RUN``, offline, and never failing a run (issue: reliability and the run
report with pictures)."""

import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from corekit import report_html
from corekit.cli import main
from corekit.data import load_dataset
from corekit.plugins import get_plugins
from corekit.predict import load_trained, predict
from corekit.run_files import load_run_recipe
from corekit.testing import run_tiny, tiny_recipe

SECTIONS = ("what-ran", "metrics", "sizes", "samples", "confusion", "embedding", "curves",
            "recipe", "versions")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 1-epoch simclr-kmeans run on 500 of the digits (a subset, so the report must reload
    the same 500 images the run saw)."""
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["train", "simclr-kmeans", "--data", "digits", "--set", "data.subset=500",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--out",
                 str(out), "--no-progress"]) == 0
    return out


class Page(HTMLParser):
    """The attributes, section ids and text of a page."""

    def __init__(self, text):
        super().__init__()
        self.links, self.ids, self.tags, self.cells, self.text = [], [], set(), [], []
        self.sections = {}
        self._table = self._style = False
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self._style = tag == "style"
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "section":
            self.ids.append(attrs.get("id"))
            self.sections[attrs.get("id")] = ""
        if tag == "table" and attrs.get("id") == "confusion-table":
            self._table = True
        if self._table and tag == "tr":
            self.cells.append([])
        if self._table and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        self._style = False
        if tag == "table":
            self._table = False
        if self._table and tag in ("td", "th") and self._cell is not None:
            self.cells[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if not self._style:
            self.text.append(data)
            if self.ids:
                self.sections[self.ids[-1]] += " " + data
        if self._cell is not None:
            self._cell += data


def page(run_dir):
    return Page((run_dir / "report" / "index.html").read_text())


def text(run_dir, section=None):
    found = page(run_dir)
    words = found.sections[section] if section else " ".join(found.text)
    return " ".join(words.split())


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_run_writes_an_offline_report(digits_run):
    html = (digits_run / "report" / "index.html").read_text()
    found = page(digits_run)
    assert found.ids == list(SECTIONS)
    assert 'id="missing"' not in html, text(digits_run)  # every section was made
    assert "http://" not in html and "https://" not in html
    assert "script" not in found.tags and "link" not in found.tags
    assert str(digits_run.parent) not in html  # no path of this machine
    pictures = [link for link in found.links if link.endswith(".png")]
    assert {"sizes.png", "confusion.png", "embedding.png", "curves.png"} <= set(pictures)
    assert any(p.startswith("clusters/") for p in pictures)
    for link in found.links:
        if link.startswith("#"):
            assert link[1:] in found.ids, link
            continue
        target = (digits_run / "report" / link).resolve()
        assert target.is_file(), link
        assert digits_run.resolve() in target.parents, link  # nothing outside the run
    for name in pictures:
        with Image.open(digits_run / "report" / name) as img:
            assert img.format == "PNG" and min(img.size) > 20
    assert "report/index.html" in (digits_run / "report.md").read_text()
    words = text(digits_run)
    assert "t-SNE of online:backbone" in words and "500 of the 500 images" in words
    assert "simclr-kmeans" in words and "train.steps_per_epoch=2" in words  # what ran
    assert 'name = "simclr-kmeans"' in words  # the recipe, escaped
    assert "torch" in words  # the versions


def test_confusion_matrix_is_that_of_assignments_csv(digits_run):
    rows = read_csv(digits_run / "assignments.csv")
    labels = np.array([int(r["label"]) for r in rows])
    cluster = np.array([int(r["cluster"]) for r in rows])
    counts = np.zeros((10, 10), dtype=int)
    for y, c in zip(labels, cluster, strict=True):
        counts[y, c] += 1
    classes, clusters = linear_sum_assignment(-counts)
    matched = [int(c) for _, c in sorted(zip(classes, clusters, strict=True))]
    rest = sorted(set(range(10)) - set(matched), key=lambda c: (-counts[:, c].sum(), c))
    order = matched + rest
    with open(digits_run / "report" / "confusion.csv", newline="") as fh:
        written = list(csv.reader(fh))
    assert [int(c) for c in written[0][1:]] == order
    assert [[int(v) for v in row[1:]] for row in written[1:]] == counts[:, order].tolist()
    table = page(digits_run).cells
    assert [int(c) for c in table[0][1:]] == order
    assert [[int(v) for v in row[1:]] for row in table[1:]] == counts[:, order].tolist()
    hits = int(counts[range(10), matched].sum())
    final = json.loads((digits_run / "final.json").read_text())
    assert f"ACC {hits / len(rows):.4f}" in text(digits_run)
    assert hits / len(rows) == pytest.approx(final["acc"], abs=1e-9)


def test_grids_show_each_clusters_most_confident_images_first(digits_run):
    rows = read_csv(digits_run / "assignments.csv")
    cluster = np.array([int(r["cluster"]) for r in rows])
    confidence = np.array([float(r["confidence"]) for r in rows])
    stage = load_run_recipe(digits_run).stages[-1]
    data = load_dataset("digits").subset(stage.data.subset, stage.train.seed)
    assert [int(r["label"]) for r in rows] == data.labels.tolist()
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        best = members[np.argsort(-confidence[members], kind="stable")]
        grid = np.asarray(Image.open(digits_run / "report" / "clusters" / f"cluster-{c:03d}.png"))
        shown = min(len(members), 16)
        assert grid.shape[0] == 2 + (2 if shown > 8 else 1) * 42, c  # 40 px tiles, 2 px gaps
        assert grid.shape[1] == 2 + min(shown, 8) * 42, c
        for slot in (0, shown - 1):  # the first and the last image shown
            r, col = divmod(slot, 8)
            tile = grid[2 + 42 * r:42 + 42 * r, 2 + 42 * col:42 + 42 * col, 0]
            pixels = data.images[best[slot], 0].numpy().repeat(5, 0).repeat(5, 1)
            assert np.array_equal(tile, pixels), (c, slot)


def test_report_command_rebuilds_the_report(digits_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(digits_run, run)
    shutil.rmtree(run / "report")
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    assert f"wrote {run / 'report' / 'index.html'}" in capsys.readouterr().out
    assert page(run).ids == list(SECTIONS)
    assert (run / "report" / "confusion.csv").read_text() == \
        (digits_run / "report" / "confusion.csv").read_text()
    assert "report/index.html" in (run / "report.md").read_text()
    for folder in (tmp_path, tmp_path / "nowhere"):
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"{folder} is not a run directory" in err and "--out" in err


def flat_folder(folder, n=30):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_a_run_without_labels_has_no_confusion_matrix_and_says_why(tmp_path):
    folder = flat_folder(tmp_path / "private" / "flat")
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folder}", "--k", "3",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1", "--out",
                 str(out), "--no-progress"]) == 0
    report = out / "report"
    assert not (report / "confusion.png").exists() and not (report / "confusion.csv").exists()
    assert text(out, "confusion").startswith("Confusion matrix Not in this report: no labels: "
                                             "the run's data set has no ground-truth classes")
    assert 'id="missing"' in (report / "index.html").read_text()
    assert "Missing from this report: Confusion matrix" in text(out)
    assert "coloured by cluster only" in text(out, "embedding")
    assert page(out).ids == list(SECTIONS)
    assert list((report / "clusters").glob("cluster-*.png"))  # data reloaded from local.json
    assert (report / "embedding.png").exists()
    html = (report / "index.html").read_text()
    assert str(tmp_path) not in html

    # the images are gone: the report is still made, says so, and shows no local path
    shutil.move(str(folder), str(tmp_path / "moved"))
    assert main(["report", str(out)]) == 0
    for section in ("samples", "embedding"):
        assert "Not in this report: the run's data could not be loaded again" in \
            text(out, section)
    assert (report / "sizes.png").exists() and (report / "curves.png").exists()
    assert not list(report.glob("clusters/*.png"))  # the old grids were removed
    assert str(tmp_path) not in (report / "index.html").read_text()


def test_a_broken_report_never_fails_the_run(tmp_path, monkeypatch, capsys):
    def boom(ctx):
        raise RuntimeError("boom in the embedding")

    sections = [(k, t, boom if k == "embedding" else f) for k, t, f in report_html.SECTIONS]
    monkeypatch.setattr(report_html, "SECTIONS", sections)
    final = run_tiny(tiny_recipe(), tmp_path / "a", get_plugins())
    assert "nmi" in final
    assert "Not in this report: could not be made: RuntimeError: boom in the embedding" in \
        text(tmp_path / "a", "embedding")
    assert (tmp_path / "a" / "report" / "confusion.png").exists()  # the rest is there

    def no_page(run_dir, plugins=None):
        raise OSError("disk full")

    monkeypatch.setattr(report_html, "write_html_report", no_page)
    assert "nmi" in run_tiny(tiny_recipe(), tmp_path / "b", get_plugins())
    assert "index.html could not be written: OSError: disk full" in capsys.readouterr().err
    assert (tmp_path / "b" / "report.md").exists()
    assert "report/index.html" not in (tmp_path / "b" / "report.md").read_text()


def test_features_are_those_the_evaluation_assigns_from(tmp_path):
    """A head-argmax stage after a k-means one: the embedding of each is of the part its
    evaluation assigns with (checked through predict's assignments)."""
    raw = tiny_recipe(stage=[
        {"name": "first"},
        {"name": "second",
         "model": {"heads": {"cluster": {"type": "cluster_head", "input": "backbone",
                                          "output": "logits"}}},
         "eval": {"assign": "head:cluster"}}])
    plugins = get_plugins()
    run_tiny(raw, tmp_path, plugins)
    words = text(tmp_path)
    assert "t-SNE of online:cluster (the cluster head's probabilities, 10-d)" in words
    assert "network of stage second" in words
    model = load_trained(tmp_path, plugins)
    data = load_dataset("digits").subset(256, 0)
    x = report_html.features(model, data, np.arange(len(data)))
    cluster, _ = predict(model, data)
    assert np.array_equal(x.argmax(axis=1), cluster.numpy())
    assert np.allclose(x.sum(axis=1), 1, atol=1e-5)  # probabilities

    shutil.rmtree(tmp_path / "stages" / "second")  # as if the run stopped after stage one
    model = load_trained(tmp_path, plugins)
    x = report_html.features(model, data, np.arange(len(data)))
    cluster, _ = predict(model, data)
    assert x.shape[1] == 32  # the backbone k-means clustered
    nearest = ((x[:, None] - model.centroids.numpy()[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(nearest, cluster.numpy())


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium binary on PATH (Debian: "
                    "apt-get install chromium) to render the report")
def test_the_report_renders_in_headless_chromium(digits_run, tmp_path):
    shot = tmp_path / "shot.png"
    url = (digits_run / "report" / "index.html").resolve().as_uri()
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,2000",
                    url], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 25, "the screenshot is (nearly) blank"
    colour = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert colour.mean() > 0.005, "no coloured plot in the screenshot: the images did not load"
