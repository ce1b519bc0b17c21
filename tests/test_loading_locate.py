"""Finding weights: ``repo@revision`` references, the local hub cache, and ``hf download`` hints
that the real ``hf`` CLI runs as meant. No network: HF_HUB_OFFLINE=1 and a hub cache in tmp."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from videodirector_cli.diffusion.loading import ModelSpec, load_model
from videodirector_cli.diffusion.loading.identity import identity_of
from videodirector_cli.diffusion.loading.locate import (
    ADAPTER_PATTERNS,
    BASE_PATTERNS,
    DEFAULT_MODEL,
    DEFAULT_MOTION_ADAPTER,
    DEFAULT_VAE,
    VAE_PATTERNS,
    Reference,
    cached_snapshot,
    download_command,
    locate,
    parse_reference,
)
from videodirector_cli.errors import ModelError, UsageError

COMMIT_MAIN = "1111111111111111111111111111111111111111"
COMMIT_V2 = "2222222222222222222222222222222222222222"


@pytest.fixture(autouse=True)
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache in tmp; the hub strictly offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read once, at import
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return cache


def cache_repo(
    cache: Path, repo: str, commit: str, files: dict[str, bytes], refs=("main",)
) -> Path:
    """A repo snapshot in huggingface_hub's cache layout (models--org--name/snapshots/<commit>)."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    for name, data in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(data)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------- references


def test_parse_reference_splits_a_pinned_hub_revision():
    assert parse_reference("acme/rv6", "model") == Reference("acme/rv6", "acme/rv6", None)
    assert parse_reference(" acme/rv6@v2.0 ", "model") == Reference(
        "acme/rv6@v2.0", "acme/rv6", "v2.0"
    )
    assert parse_reference(f"acme/rv6@{COMMIT_V2}", "model").revision == COMMIT_V2
    assert parse_reference("acme/rv6@refs/pr/3", "model").revision == "refs/pr/3"
    hub_file = parse_reference("guoyww/animatediff/v3_sd15_mm.ckpt@abc1", "motion adapter")
    assert (hub_file.name, hub_file.revision) == ("guoyww/animatediff/v3_sd15_mm.ckpt", "abc1")


def test_paths_are_never_split_at_an_at_sign(tmp_path):
    folder = tmp_path / "rv@2"
    folder.mkdir()
    assert parse_reference(str(folder), "model") == Reference(str(folder), str(folder))
    assert parse_reference("./models/rv@2", "model").revision is None
    assert parse_reference("~/models/rv@2.safetensors", "model").revision is None


@pytest.mark.parametrize(
    ("text", "role", "says"),
    [
        ("acme/rv6@", "model", "--model 'acme/rv6@' names no revision after '@'"),
        ("acme/rv6@v1@v2", "model", "--model 'acme/rv6@v1@v2' has more than one '@'"),
        ("guoyww/mm@", "motion adapter", "--motion-adapter 'guoyww/mm@' names no revision"),
        ("acme/vae@a@b", "VAE", "--vae 'acme/vae@a@b' has more than one '@'"),
        ("tiny@v1", "model", "only a hub id takes '@REVISION'"),
        ("acme/rv6@bad rev", "model", "'bad rev' is not a revision name"),
        ("acme/rv6@../../x", "model", "is not a revision name"),
    ],
)
def test_bad_revisions_are_one_usage_line(text, role, says):
    with pytest.raises(UsageError) as info:
        parse_reference(text, role)
    assert says in one_line(info.value)
    assert info.value.exit_code == 2


def test_load_model_checks_every_reference_before_looking_anything_up():
    with pytest.raises(UsageError, match="--vae 'acme/vae@' names no revision"):
        load_model(ModelSpec(model="acme/not-cached", vae="acme/vae@"))


# ----------------------------------------------------------------------------- hub cache


def test_snapshot_download_finds_the_fake_cache_offline(hub_cache):
    """The fake cache has huggingface_hub's own layout: its local-only lookup reads it."""
    import huggingface_hub

    cache_repo(hub_cache, "acme/rv6", COMMIT_MAIN, {"unet/config.json": b"{}"})
    found = huggingface_hub.snapshot_download(
        "acme/rv6", allow_patterns=["unet/*"], local_files_only=True
    )
    assert Path(found).name == COMMIT_MAIN


def test_cached_snapshot_resolves_branches_tags_and_commits(hub_cache):
    cache_repo(hub_cache, "acme/rv6", COMMIT_MAIN, {"unet/config.json": b"{}"})
    cache_repo(hub_cache, "acme/rv6", COMMIT_V2, {"unet/config.json": b"{}"}, refs=("v2",))
    assert cached_snapshot("acme/rv6", None, ("unet/*",)).name == COMMIT_MAIN
    assert cached_snapshot("acme/rv6", "v2", ("unet/*",)).name == COMMIT_V2
    assert cached_snapshot("acme/rv6", COMMIT_V2, ("unet/*",)).name == COMMIT_V2
    assert cached_snapshot("acme/rv6", "v3", ("unet/*",)) is None
    assert cached_snapshot("acme/rv6", None, ("vae/*",)) is None, "nothing the role needs"


def test_the_commit_a_revision_resolves_to_is_the_identity(hub_cache):
    cache_repo(hub_cache, "acme/vae", COMMIT_MAIN, {"config.json": b"{}"})
    cache_repo(hub_cache, "acme/vae", COMMIT_V2, {"config.json": b"{}"}, refs=("v2",))

    def identity(text: str) -> str:
        located = locate(parse_reference(text, "VAE"), "VAE", VAE_PATTERNS)
        return identity_of(located, located.path)

    assert identity("acme/vae") == f"hub:acme/vae@{COMMIT_MAIN}"
    assert identity("acme/vae@v2") == f"hub:acme/vae@{COMMIT_V2}"
    assert identity(f"acme/vae@{COMMIT_MAIN}") == identity("acme/vae"), "same commit, same weights"


def test_pinned_hub_file_names_its_commit_even_in_a_subfolder(hub_cache):
    cache_repo(hub_cache, "acme/mm", COMMIT_V2, {"sub/mm_v3.ckpt": b"weights"}, refs=("v2",))
    located = locate(
        parse_reference("acme/mm/sub/mm_v3.ckpt@v2", "motion adapter"), "motion adapter", ()
    )
    assert located.path.read_bytes() == b"weights"
    assert located.hub == f"acme/mm/sub/mm_v3.ckpt@{COMMIT_V2}"


def test_pinned_revision_not_cached_offline_says_how_to_fetch_it(hub_cache):
    cache_repo(hub_cache, "acme/rv6", COMMIT_MAIN, {"unet/config.json": b"{}"})
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(model="acme/rv6@v3"))
    text = one_line(info.value)
    assert "model acme/rv6 at revision v3 is not available locally (HF_HUB_OFFLINE is set)" in text
    assert "hf download acme/rv6 --include model_index.json --include 'unet/*'" in text
    assert text.endswith("--revision v3, or pass --model /path)")


def test_pinned_hub_file_not_cached_offline_says_how_to_fetch_it():
    with pytest.raises(ModelError) as info:
        locate(parse_reference("acme/mm/mm_v3.ckpt@v2", "motion adapter"), "motion adapter", ())
    text = one_line(info.value)
    assert "motion adapter acme/mm/mm_v3.ckpt at revision v2 is not available locally" in text
    assert "fetch it with: hf download acme/mm mm_v3.ckpt --revision v2," in text


# ----------------------------------------------------------------------------- hf download


def test_download_command_repeats_include_for_every_pattern():
    words = shlex.split(download_command("acme/rv6", BASE_PATTERNS, revision="v2"))
    shown = [p for p in BASE_PATTERNS if p != "motion_adapter/*"]
    assert words[:3] == ["hf", "download", "acme/rv6"]
    assert words.count("--include") == len(shown)
    assert [words[i + 1] for i, w in enumerate(words) if w == "--include"] == shown
    assert words[-2:] == ["--revision", "v2"]
    files = shlex.split(download_command("openai/clip", files=("vocab.json", "merges.txt")))
    assert files == ["hf", "download", "openai/clip", "vocab.json", "merges.txt"]


def run_hf_cli(command: str, monkeypatch) -> list[tuple[str, dict]]:
    """Run an ``hf download`` command line through the installed hf CLI, its downloads replaced
    by recorders: what would it fetch?"""
    from click.testing import CliRunner
    from huggingface_hub.cli import download as hf_download
    from huggingface_hub.cli.hf import app

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        hf_download, "snapshot_download", lambda **kw: calls.append(("snapshot", kw)) or "/x"
    )
    monkeypatch.setattr(
        hf_download, "hf_hub_download", lambda **kw: calls.append(("file", kw)) or "/x"
    )
    words = shlex.split(command)
    assert words[:2] == ["hf", "download"]
    result = CliRunner().invoke(app, words[1:])
    assert result.exit_code == 0, result.output
    return calls


def test_the_offline_hint_is_what_the_hf_cli_runs(monkeypatch):
    """Every command in the one-line hint fetches exactly the patterns vdir looks for."""
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec())
    hint = one_line(info.value).split("fetch them with: ", 1)[1].split(" (see docs/models.md)")[0]
    commands = hint.split("; ")
    wanted = {
        DEFAULT_MODEL: [p for p in BASE_PATTERNS if p != "motion_adapter/*"],
        DEFAULT_MOTION_ADAPTER: list(ADAPTER_PATTERNS),
        DEFAULT_VAE: list(VAE_PATTERNS),
    }
    assert len(commands) == len(wanted)
    for command in commands:
        calls = run_hf_cli(command, monkeypatch)
        assert len(calls) == 1
        kind, kwargs = calls[0]
        assert kind == "snapshot"
        assert kwargs["allow_patterns"] == wanted[kwargs["repo_id"]]
        assert kwargs["revision"] is None


def test_the_hf_cli_reads_a_pinned_revision(monkeypatch):
    calls = run_hf_cli(download_command("acme/vae", VAE_PATTERNS, revision="v2"), monkeypatch)
    assert [(k, kw["allow_patterns"], kw["revision"]) for k, kw in calls] == [
        ("snapshot", list(VAE_PATTERNS), "v2")
    ]
    # The old form, --include 'a' 'b', fetches only the second name as a file: the bug this fixes.
    with pytest.warns(UserWarning, match="Ignoring `--include`"):
        calls = run_hf_cli("hf download acme/vae --include config.json model.bin", monkeypatch)
    assert [(k, kw.get("filename")) for k, kw in calls] == [("file", "model.bin")]
