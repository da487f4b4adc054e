"""The layer-shape cache (SPEC 5.1): cached results equal fresh traces; stale or unreadable entries are never used."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim import shapecache
from hwsim.cli import cli
from hwsim.cost import ModelSetting, analyze, compare, summarize
from hwsim.count import memory_bytes as count_memory_bytes
from hwsim.hardware import HardwareConfig, get_preset
from hwsim.output import analysis_document, compare_rows

ROOT = Path(__file__).resolve().parents[1]
ASIC65 = get_preset("asic65")
HARDWARE = [ASIC65, HardwareConfig(b_w=6, n_mult=64, sparse_storage="bitmap", zero_skip=True),
            HardwareConfig(b_io=32, n_bank=2, sparse_storage="bitmap")]
SETTINGS = [
    ModelSetting("resnet34", "oat"),
    ModelSetting("resnet18", "floats-i", density=0.3),
    ModelSetting("wrn16_8", "floats-c", density=0.5),
    ModelSetting("wrn40_2", "oat-slim", width=0.5, film_dim=128, bn="dual"),
    ModelSetting("preact_resnet18", "float", dataset="svhn"),
    ModelSetting("small_cnn", "floats-slim", width=0.5, density=0.5, input_size=(1, 28, 28)),
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSIM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fresh_and_cached(setting, hw, include_bn=False):
    fresh = analyze(setting, hw, include_bn=include_bn)
    entry = json.loads(json.dumps(shapecache.store(setting, fresh)))  # through JSON, as a file holds it
    return fresh, shapecache.analysis_from_entry(setting, entry, hw, include_bn=include_bn)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s.model}-{s.variant}")
def test_cached_records_give_the_same_documents(setting, cache, one_thread):
    for hw in HARDWARE:
        for include_bn in (False, True):
            fresh, cached = fresh_and_cached(setting, hw, include_bn)
            assert cached.counts.memory_bytes == count_memory_bytes(fresh.trace, fresh.counts.params, hw,
                                                                    include_bn=include_bn)
            for ops_all in (False, True):
                assert analysis_document(cached, ops_all=ops_all) == analysis_document(fresh, ops_all=ops_all)
            assert summarize(cached) == summarize(fresh)


def test_pruned_entries_exercise_the_bitmap_path(cache, one_thread):
    fresh, cached = fresh_and_cached(SETTINGS[1], HARDWARE[1])
    dense, _ = fresh_and_cached(SETTINGS[1], ASIC65)
    assert cached.counts.memory_bytes != dense.counts.memory_bytes * 6 // 8  # the bitmap is charged


def test_compare_through_the_cache(cache, one_thread):
    setting = ModelSetting("wrn40_2", density=0.5, dataset="svhn")  # not shipped: read from the cache dir
    variants = ("base", "oat", "floats-c", "float-slim")
    fresh = compare_rows(compare(setting, variants, ASIC65))
    first = compare_rows(compare(setting, variants, ASIC65, using=shapecache.analyze))  # fills the cache
    assert len(list(cache.glob("*.json"))) == 4
    second = compare_rows(compare(setting, variants, ASIC65, using=shapecache.analyze))
    assert fresh == first == second


def test_a_hit_does_not_trace(cache, monkeypatch, one_thread):
    setting = ModelSetting("resnet18", "float", lambda_n=1.0)
    expected = analysis_document(shapecache.analyze(setting))
    import hwsim.cost

    monkeypatch.setattr(hwsim.cost, "analyze", lambda *a, **k: pytest.fail("traced despite a cache entry"))
    assert analysis_document(shapecache.analyze(setting)) == expected


def poison(cache: Path) -> Path:
    """Change the one entry's MACs, so that a run that reads it is recognisable (with its checksum made to
    match, as a valid entry of other content; an edit alone is a miss, see test_an_edited_entry_...)."""
    (path,) = cache.glob("*.json")
    data = json.loads(path.read_text())
    data["entry"]["macs"] += 1
    data["checksum"] = shapecache._checksum(data)
    path.write_text(json.dumps(data))
    return path


def test_version_sources_and_no_cache_each_bypass_an_entry(cache, monkeypatch, one_thread):
    setting = ModelSetting("small_cnn", "oat", input_size=(3, 16, 16))  # not shipped
    truth = shapecache.analyze(setting).counts.macs
    poison(cache)
    assert shapecache.analyze(setting).counts.macs == truth + 1  # the entry is what is read
    token = shapecache.set_enabled(False)
    try:
        assert shapecache.analyze(setting).counts.macs == truth
    finally:
        shapecache._enabled.reset(token)
    monkeypatch.setenv("HWSIM_NO_CACHE", "1")
    assert shapecache.analyze(setting).counts.macs == truth
    monkeypatch.delenv("HWSIM_NO_CACHE")
    monkeypatch.setattr(shapecache, "source_digest", lambda: "other sources")
    assert shapecache.lookup(setting) is None
    monkeypatch.undo()
    monkeypatch.setenv("HWSIM_CACHE_DIR", str(cache))
    import hwsim

    monkeypatch.setattr(hwsim, "__version__", "9.9.9")
    assert shapecache.lookup(setting) is None


def test_every_knob_is_part_of_the_key(cache, one_thread):
    base = ModelSetting("small_cnn", "floats-slim", density=0.5, width=0.5)
    shapecache.analyze(base)
    for change in ({"density": 0.25}, {"width": 1.0}, {"widths": (0.25, 0.5, 1.0)}, {"lambda_n": 1.0},
                   {"input_size": (3, 16, 16)}, {"dataset": "svhn"}, {"bn": "dual"}):
        assert shapecache.lookup(dataclasses.replace(base, **change)) is None, change
    assert shapecache.lookup(base) is not None
    assert not shapecache.cacheable(dataclasses.replace(base, masks="run/ckpt.pt"))


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


USER_MODEL = """
import torch.nn as nn
from helper import WIDTH

def make():
    return nn.Sequential(nn.Conv2d(3, WIDTH, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
"""


def test_editing_a_user_models_helper_module_invalidates_its_entry(cache, tmp_path, monkeypatch, one_thread):
    src = tmp_path / "user"
    src.mkdir()
    (src / "net.py").write_text(USER_MODEL.replace("nn.LazyLinear(10)", "nn.Linear(WIDTH * 30 * 30, 10)"))
    (src / "helper.py").write_text("WIDTH = 8\n")
    monkeypatch.syspath_prepend(str(src))
    spec = f"{src / 'net.py'}:make"

    def params() -> int:
        sys.modules.pop("helper", None)  # a new process would import the helper afresh
        return json.loads(invoke("count", spec, "--format", "json"))["totals"]["params"]

    assert params() == 8 * 27 + 8 + 8 * 900 * 10 + 10
    assert len(list(cache.glob("*.json"))) == 1
    entry = json.loads(next(cache.glob("*.json")).read_text())
    assert str((src / "helper.py").resolve()) in entry["user_sources"]
    assert params() == 8 * 27 + 8 + 8 * 900 * 10 + 10  # a hit
    (src / "helper.py").write_text("WIDTH = 4\n")
    assert params() == 4 * 27 + 4 + 4 * 900 * 10 + 10  # the edit is seen, not the stale entry
    (src / "net.py").write_text((src / "net.py").read_text().replace("nn.Conv2d(3, WIDTH, 3)",
                                                                       "nn.Conv2d(3, WIDTH, 3, bias=False)"))
    assert params() == 4 * 27 + 4 * 900 * 10 + 10


def test_a_corrupted_cache_file_is_ignored_with_a_warning(cache, one_thread, capsys):
    setting = ModelSetting("small_cnn", "float", input_size=(3, 20, 20))  # not shipped
    truth = analysis_document(shapecache.analyze(setting))
    (path,) = cache.glob("*.json")
    current = shapecache.FORMAT
    for garbage in (f'{{"format": {current}, "entry": {{"layers": 3',
                    f'{{"format": {current}, "key": {{}}, "entry": {{"layers": "x"}}}}', "\x00\xff not json"):
        path.write_text(garbage, encoding="latin-1")
        with pytest.warns(shapecache.CacheWarning, match="ignoring unreadable shape-cache file"):
            assert analysis_document(shapecache.analyze(setting)) == truth
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert analysis_document(shapecache.analyze(setting)) == truth  # rewritten: read cleanly again
    path.write_text("garbage")
    from hwsim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["count", "small_cnn", "--variant", "float", "--dataset", "cifar10", "--input-size", "20",
              "--format", "json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0 and json.loads(out)["totals"]["params"] == truth["totals"]["params"]
    assert err.count("\n") == 1 and err.startswith("hwsim: warning: ignoring unreadable shape-cache file")


def test_the_cli_reads_the_cache_without_torch_or_pandas(cache):
    env = {**os.environ, "HWSIM_CACHE_DIR": str(cache)}
    args = [sys.executable, "-m", "hwsim", "delay", "small_cnn", "--variant", "oat", "--format", "json"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, check=True).stdout
    code = ("import sys, runpy; sys.argv = " + repr(["hwsim", *args[3:]]) + "\n"
            "try:\n    runpy.run_module('hwsim', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', sorted(m for m in ('torch', 'pandas') if m in sys.modules), file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert run.stdout == first
    assert "IMPORTED []" in run.stderr
    missed = subprocess.run([*args, "--no-cache"], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert missed.stdout == first


def test_shipped_entries_are_current():
    """Regenerate with `python -m hwsim.shapecache` after changing tracing, counting or the model zoo."""
    files = sorted(shapecache.SHIPPED.glob("*.json"))
    assert len(files) == len(shapecache.default_settings())
    for path in files:
        data = json.loads(path.read_text())
        assert data["sources"] == shapecache.source_digest(), f"{path.name} is stale: python -m hwsim.shapecache"


@pytest.mark.parametrize("setting", [s for s in shapecache.default_settings() if s.model in ("resnet34", "wrn40_2")],
                         ids=lambda s: f"{s.model}-{s.variant}-{s.density}")
def test_shipped_entries_equal_a_fresh_trace(setting, monkeypatch, tmp_path, one_thread):
    monkeypatch.setenv("HWSIM_CACHE_DIR", str(tmp_path / "empty"))
    shipped = shapecache.lookup(setting)
    assert shipped is not None, "not shipped"
    fresh = analyze(setting)
    assert json.loads(json.dumps(shapecache._entry(setting, fresh))) == shipped


DATA_DEPENDENT = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        if float(y.abs().sum()) >= 0:  # a value, not a shape: cannot run on the meta device
            return self.fc(y)
        return y

def make():
    return Net()
"""


@pytest.mark.parametrize("setting", [ModelSetting("resnet18", "oat", input_size=(3, 160, 160)),
                                     ModelSetting("wrn16_8", "floats-c", density=0.5, input_size=(3, 136, 136)),
                                     ModelSetting("small_cnn", "float-slim", width=0.5, input_size=(3, 200, 130))],
                         ids=lambda s: s.variant)
def test_large_inputs_are_traced_on_meta_with_the_same_records(setting, one_thread):
    from hwsim.cost import META_PIXELS, build_model, trace_batch1
    from hwsim.trace import trace_model

    assert setting.input_size[1] * setting.input_size[2] > META_PIXELS
    model = build_model(setting)
    meta = trace_model(model, setting.input_size, device="meta")
    assert meta == trace_model(model, setting.input_size)  # real tensors
    assert trace_batch1(model, setting.input_size) == meta


def test_a_model_that_cannot_run_on_meta_is_traced_on_real_tensors(tmp_path, one_thread):
    from hwsim.cost import build_model, trace_batch1
    from hwsim.trace import trace_model

    path = tmp_path / "dd.py"
    path.write_text(DATA_DEPENDENT)
    model = build_model(ModelSetting(f"{path}:make"))
    with pytest.raises(Exception):
        trace_model(model, (3, 200, 200), device="meta")
    assert trace_batch1(model, (3, 200, 200)).layers[0].h_out == 198


def test_the_model_zoo_imports_lazily_with_the_same_names():
    code = ("import sys, models\n"
            "assert models.get_dataset('svhn').input_size == 32 and 'torch' not in sys.modules\n"
            "import models.layers  # imports the submodule models.knobs, whose name is also a function's\n"
            "assert models.knobs.__module__ == 'models.knobs' and callable(models.knobs)\n"
            "from models import VARIANTS, create_model, list_models, set_knobs\n"
            "assert 'resnet34' in list_models() and 'oat' in VARIANTS\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    path = tmp_path / "helper.py"
    path.write_text("WIDTH = 8\n")
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or original(self))
    first = shapecache._file_hash(path)
    assert shapecache._file_hash(path) == first and len(reads) == 1  # the second lookup reads nothing
    before = path.stat()
    path.write_text("WIDTH = 4\n")  # the same size, and (put back) the same modification time: still a new version
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert shapecache._file_hash(path) not in (None, first) and len(reads) == 2
    path.unlink()
    assert shapecache._file_hash(path) is None


def test_an_entry_that_cannot_be_put_in_place_leaves_nothing_behind(tmp_path, monkeypatch):
    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    shapecache._write(tmp_path / "entry.json", {"layers": []})  # no error: the next run traces again
    assert list(tmp_path.iterdir()) == []


def test_a_user_models_second_count_imports_no_torch(cache, tmp_path):
    """Old: torch.ops / torch.classes have relative __file__ values, hashed to None, and any None made the
    entry stale: a file.py:factory model was traced on every run (5-6 s, like fvcore)."""
    net = tmp_path / "net.py"
    net.write_text("import torch.nn as nn\n\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 4, (1, 7)), "
                   "nn.Flatten(), nn.LazyLinear(10))\n")
    env = {**os.environ, "HWSIM_CACHE_DIR": str(cache)}
    argv = ["hwsim", "count", f"{net}:make", "--format", "json"]
    code = ("import sys, runpy; sys.argv = " + repr(argv) + "\n"
            "try:\n    runpy.run_module('hwsim', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', sorted(m for m in ('torch',) if m in sys.modules), file=sys.stderr)")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                           check=True)
    assert "IMPORTED ['torch']" in first.stderr
    (entry,) = (json.loads(p.read_text()) for p in cache.glob("*.json"))
    assert all(digest is not None for digest in entry["user_sources"].values())
    assert str(net.resolve()) in entry["user_sources"] and not any(
        name.endswith(("_ops.py", "_classes.py")) for name in entry["user_sources"])
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                            check=True)
    assert "IMPORTED []" in second.stderr and second.stdout == first.stdout
    assert json.loads(second.stdout)["totals"]["macs"] == 7 * 3 * 4 * 32 * 26 + 4 * 32 * 26 * 10  # 32 x 26 out


def test_an_edited_entry_is_a_miss_with_a_warning(cache, one_thread):
    """Old: an entry with edited numbers (valid JSON, the right shape) was trusted."""
    setting = ModelSetting("small_cnn", "base", input_size=(3, 20, 20))  # not shipped
    truth = analysis_document(shapecache.analyze(setting))
    (path,) = cache.glob("*.json")
    data = json.loads(path.read_text())
    data["entry"]["macs"] += 1000
    path.write_text(json.dumps(data))
    with pytest.warns(shapecache.CacheWarning, match="checksum does not match"):
        assert analysis_document(shapecache.analyze(setting)) == truth
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated
    with pytest.warns(shapecache.CacheWarning, match="ignoring unreadable shape-cache file"):
        assert analysis_document(shapecache.analyze(setting)) == truth


def test_a_long_lived_process_stores_the_hash_of_the_code_it_ran(cache, tmp_path, monkeypatch, one_thread):
    """Old: hashes were taken at store time, so a process that still runs the helper it imported stored
    that trace under the hash of the helper's new content, and a fresh process then trusted it."""
    src = tmp_path / "user"
    src.mkdir()
    (src / "net.py").write_text(USER_MODEL.replace("nn.LazyLinear(10)", "nn.Linear(WIDTH * 30 * 30, 10)"))
    (src / "helper.py").write_text("WIDTH = 8\n")
    monkeypatch.syspath_prepend(str(src))
    spec = f"{src / 'net.py'}:make"
    sys.modules.pop("helper", None)

    def params() -> int:
        return json.loads(invoke("count", spec, "--format", "json"))["totals"]["params"]

    eight, four = 8 * 27 + 8 + 8 * 900 * 10 + 10, 4 * 27 + 4 + 4 * 900 * 10 + 10
    assert params() == eight
    (src / "helper.py").write_text("WIDTH = 4\n")  # edited; this process keeps running the helper it imported
    for old in cache.glob("*.json"):
        old.unlink()
    assert params() == eight  # the code in memory (WIDTH = 8) is what was traced ...
    sys.modules.pop("helper", None)  # ... and a new process, importing WIDTH = 4, must not be served it
    assert params() == four
