"""The authors' weights by name (`hvc-ytb`, `moco-v1`) or URL: downloaded once into the cache,
checked, recorded, offline-safe; against a real HTTP server on 127.0.0.1 (no internet needed).

The server serves files laid out as published: the HVC zip holding a ResNet-18 state dict as the
official `convert_pretrain.py` saves it (in a folder), and a MoCo-v1 checkpoint. Every failure
leaves no file that a later run would take for good.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from hvc_export.exporter import ExportRequest, default_artifact_path, export
from hvc_export.graph import ShapeRange
from hvc_runtime.cli import demo, run_app
from hvc_runtime.encoder.artifacts import read_manifest
from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.encoder.network import StrideEightResNet
from hvc_runtime.encoder.published import MODELS, remote_weights
from hvc_runtime.encoder.weights_cache import recorded_sha256, weights_folder
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.errors import HvcError, OptionError
from tests.test_cli import assert_one_line_error, run_cli
from tests.weights_server import Route, serving, silent_listener

ZIP = "/v0.1/releases_models.zip"
MOCO = "/v0.1/moco_v1_200ep_pretrain.pth.tar"
MEMBER = "releases_models/hvc_ytb.pth"
WORKER = """
import sys
from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.utils.errors import HvcError
try:
    print(load_encoder(sys.argv[1]).weights["checkpoint"].sha256)
except HvcError as error:
    sys.exit(f"error: {error}")
"""


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method, compresslevel=1) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def trunk_state(architecture: str = "resnet18") -> dict[str, torch.Tensor]:
    """Only the layer3 trunk the runtime reads: a valid checkpoint, a quarter of the size."""
    return StrideEightResNet(architecture, "layer3").state_dict()


@pytest.fixture(scope="session")
def published() -> dict:
    """The files as published, built once: the HVC zip, its member, a MoCo-format file."""
    torch.manual_seed(5)
    state = OrderedDict(resnet18(weights=None).state_dict())  # as convert_pretrain.py saves it
    member = saved(state)
    moco = {
        "state_dict": {f"module.encoder_q.{k}": v for k, v in trunk_state("resnet50").items()},
        "epoch": 200,
        "arch": "resnet50",
    }
    return {
        "state": state,
        "member": member,
        "sha": hashlib.sha256(member).hexdigest(),
        "zip": zipped({"releases_models/": b"", MEMBER: member}),
        "moco": saved(moco),
    }


@pytest.fixture
def mirror(published, monkeypatch, tmp_path):
    """A mirror on 127.0.0.1 named by HVC_WEIGHTS_URL, and an empty cache under HVC_HOME."""
    with serving() as server:
        server.routes[ZIP] = Route(published["zip"])
        server.routes[MOCO] = Route(published["moco"])
        server.routes["/files/moco.pth.tar"] = Route(published["moco"])
        server.routes["/files/encoder.pth"] = Route(published["member"])
        monkeypatch.setenv("HVC_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("HVC_WEIGHTS_URL", server.url("/v0.1"))
        monkeypatch.delenv("HVC_OFFLINE", raising=False)
        monkeypatch.delenv("HVC_DOWNLOAD_TIMEOUT", raising=False)
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a proxy set for the internet
        yield server


@pytest.fixture
def cache(mirror, tmp_path) -> Path:
    return tmp_path / "home" / "weights"


def listing(folder: Path) -> list[str]:
    """Everything in the cache folder, hidden files (partial downloads, locks) included."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def failure(*fragments: str, value: str | None = "hvc-ytb", moco: str | None = None) -> str:
    """Loading `value` (and `moco`) fails with one line holding every fragment; the message."""
    with pytest.raises(HvcError) as caught:
        load_encoder(value, moco=moco)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def assert_same_weights(loaded, state: dict[str, torch.Tensor]) -> None:
    for key, value in loaded.encoder.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_first_use_downloads_checks_and_records_then_the_cache_answers(
    published, mirror, cache, capsys
):
    loaded = load_encoder("hvc-ytb")
    assert_same_weights(loaded, published["state"])
    sha = published["sha"]
    assert loaded.description == f"official-format checkpoint hvc-ytb (sha256 {sha})"
    assert loaded.weights["checkpoint"].record() == {
        "name": "hvc-ytb",
        "path": str(cache / "hvc_ytb.pth"),
        "sha256": sha,
    }
    assert listing(cache) == [
        "hvc_ytb.pth",
        "hvc_ytb.pth.sha256",
        "releases_models.zip",
        "releases_models.zip.sha256",
    ]
    assert (cache / "hvc_ytb.pth.sha256").read_text() == f"{sha}  hvc_ytb.pth\n"
    zip_sha = hashlib.sha256(published["zip"]).hexdigest()
    printed = capsys.readouterr().err
    assert f"sha256 {sha} (hvc_ytb.pth)" in printed and f"sha256 {zip_sha}" in printed
    assert mirror.requests == [ZIP]

    again = load_encoder("hvc-ytb")
    assert mirror.requests == [ZIP]  # no request: the cache answered, checked by its record
    assert again.description == loaded.description
    assert "sha256" not in capsys.readouterr().err  # printed once, at first use


def test_a_redirect_to_another_host_is_followed(published, mirror, cache):
    with serving() as assets:
        assets.routes["/asset/1"] = Route(published["zip"])
        mirror.routes[ZIP] = Route(location=assets.url("/asset/1", host="localhost"))
        load_encoder("hvc-ytb")
    assert mirror.requests == [ZIP] and assets.requests == ["/asset/1"]
    assert "hvc_ytb.pth.sha256" in listing(cache)


def test_404_on_the_first_mirror_then_the_second(mirror, monkeypatch, cache):
    monkeypatch.setenv("HVC_WEIGHTS_URL", f"{mirror.url('/gone')} {mirror.url('/v0.1')}")
    load_encoder("hvc-ytb")
    assert mirror.requests == ["/gone/releases_models.zip", ZIP]


def test_every_mirror_failing_names_each_and_where_to_put_the_file(mirror, monkeypatch, cache):
    first, second = mirror.url("/gone"), mirror.url("/also-gone")
    monkeypatch.setenv("HVC_WEIGHTS_URL", f"{first} {second}")
    failure(
        f"hvc-ytb: could not download releases_models.zip ({first}/releases_models.zip: "
        f"HTTP 404 Not Found; {second}/releases_models.zip: HTTP 404 Not Found)",
        f"put hvc_ytb.pth at {cache / 'hvc_ytb.pth'} by hand",
    )
    assert listing(cache) == []


def test_a_truncated_body_is_refused(published, mirror, cache):
    mirror.routes[ZIP] = Route(published["zip"], cut=100_000)
    failure(f"100000 of {len(published['zip'])} bytes")
    assert listing(cache) == []


def test_a_server_that_never_answers_fails_within_the_timeout(mirror, monkeypatch, cache):
    monkeypatch.setenv("HVC_DOWNLOAD_TIMEOUT", "1")
    with silent_listener() as base:
        monkeypatch.setenv("HVC_WEIGHTS_URL", base)
        start = time.monotonic()
        failure(f"{base}/releases_models.zip: no answer within 1 s")
        assert time.monotonic() - start < 10
    assert listing(cache) == []


def test_a_file_that_cannot_fit_is_not_started(mirror, cache):
    mirror.routes[ZIP] = Route(claimed_length=10**18)
    failure(f"{cache}: releases_models.zip needs 1000000000000.0 MB, only")
    assert listing(cache) == []


def corrupt_crc() -> bytes:
    data = bytearray(zipped({"hvc_ytb.pth": b"x" * 4096}, zipfile.ZIP_STORED))
    data[data.index(b"x" * 64) + 10] ^= 1  # a member byte: the CRC no longer matches
    return bytes(data)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>rate limited</html>", "not a readable zip archive (File is not a zip file)"),
        (corrupt_crc(), "hvc_ytb.pth is corrupt in the zip (CRC mismatch)"),
        (
            zipped({"README.txt": b"models elsewhere"}),
            "holds none of hvc_ytb.pth, hvc_coco.pth, hvc_voc.pth, hvc_msra.pth "
            "(it holds README.txt)",
        ),
    ],
    ids=["not-a-zip", "bad-crc", "no-model"],
)
def test_a_bad_zip_is_removed(mirror, cache, body, fragment):
    mirror.routes[ZIP] = Route(body)
    message = failure(f"{cache / 'releases_models.zip'}: {fragment}; removed it")
    assert listing(cache) == [], message


def test_a_zip_without_the_member_asked_for_names_what_it_holds(mirror, cache):
    failure(
        f"hvc-coco: {cache / 'releases_models.zip'} holds no hvc_coco.pth (it holds {MEMBER})",
        value="hvc-coco",
    )
    # the zip holds another published model: kept, and that one loads without a download
    assert listing(cache) == ["releases_models.zip", "releases_models.zip.sha256"]
    load_encoder("hvc-ytb")
    assert mirror.requests == [ZIP]


def nan_trunk() -> dict[str, torch.Tensor]:
    state = trunk_state()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    return state


def missing_key() -> dict[str, torch.Tensor]:
    state = trunk_state()
    del state["layer2.0.conv1.weight"]
    return state


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        (nan_trunk, "layer1.0.conv1.weight holds 1 non-finite values"),
        (missing_key, "missing keys [layer2.0.conv1.weight]"),
        (lambda: {"args": argparse.Namespace(lr=0.1)}, "holds pickled Python objects"),
    ],
    ids=["nan", "missing-key", "pickled-object"],
)
def test_a_member_that_is_not_a_resnet18_is_removed_with_its_zip(mirror, cache, member, fragment):
    mirror.routes[ZIP] = Route(zipped({MEMBER: saved(member())}))
    failure(f"{cache / 'hvc_ytb.pth'}: ", fragment, "removed it (and releases_models.zip")
    assert listing(cache) == []


def test_a_published_checksum_that_does_not_match_is_refused(mirror, cache):
    failure(
        f"{cache / 'moco_v1_200ep_pretrain.pth.tar'}: md5 ",
        "is not the published b251726a…; removed it",
        value=None,
        moco="moco-v1",
    )
    assert mirror.requests == [MOCO] and listing(cache) == []


def test_a_cached_file_changed_after_download_is_refused_and_fetched_again(
    published, mirror, cache
):
    load_encoder("hvc-ytb")
    data = bytearray((cache / "hvc_ytb.pth").read_bytes())
    data[-100] ^= 0xFF
    (cache / "hvc_ytb.pth").write_bytes(bytes(data))
    failure(f"{cache / 'hvc_ytb.pth'}: changed since it was checked", "removed it")
    assert listing(cache) == ["releases_models.zip", "releases_models.zip.sha256"]
    assert_same_weights(load_encoder("hvc-ytb"), published["state"])  # from the cached zip
    assert mirror.requests == [ZIP]


def test_offline_never_touches_the_network(mirror, monkeypatch, cache):
    monkeypatch.setenv("HVC_OFFLINE", "1")
    failure(
        f"hvc-ytb: not in the weights cache, and HVC_OFFLINE=1 forbids downloading it from "
        f"{mirror.url(ZIP)}; put hvc_ytb.pth at {cache / 'hvc_ytb.pth'} by hand (it is in "
        f"releases_models.zip, which may go at {cache / 'releases_models.zip'} instead)"
    )
    monkeypatch.delenv("HVC_OFFLINE")
    load_encoder("hvc-ytb")
    monkeypatch.setenv("HVC_OFFLINE", "1")
    load_encoder("hvc-ytb")  # cached: works offline
    assert mirror.requests == [ZIP]


@pytest.mark.parametrize("kind", ["member", "zip"])
def test_a_file_put_by_hand_where_the_error_says_is_used(
    published, mirror, monkeypatch, cache, capsys, kind
):
    monkeypatch.setenv("HVC_OFFLINE", "1")
    message = failure()
    pattern = r"put hvc_ytb\.pth at (\S+) by hand" if kind == "member" else r"may go at (\S+) "
    place = Path(re.search(pattern, message)[1])
    place.parent.mkdir(parents=True, exist_ok=True)
    place.write_bytes(published["member"] if kind == "member" else published["zip"])
    loaded = load_encoder("hvc-ytb")
    assert_same_weights(loaded, published["state"])
    assert loaded.weights["checkpoint"].sha256 == published["sha"]
    assert f"sha256 {published['sha']}" in capsys.readouterr().err
    assert (cache / "hvc_ytb.pth.sha256").is_file() and mirror.requests == []


def test_a_url_is_downloaded_once_under_a_name_of_its_own(published, mirror, cache):
    url = mirror.url("/files/encoder.pth")
    loaded = load_encoder(url)
    assert loaded.description == f"official-format checkpoint {url} (sha256 {published['sha']})"
    (cached,) = [name for name in listing(cache) if name.endswith("-encoder.pth")]
    assert load_encoder(url).weights["checkpoint"].path == cache / cached
    assert mirror.requests == ["/files/encoder.pth"]


def test_a_record_left_without_its_file_does_not_refuse_the_next_download(mirror, cache):
    url = mirror.url("/files/encoder.pth")
    first = load_encoder(url).weights["checkpoint"]
    first.path.unlink()  # a file deleted by hand, its record left behind
    mirror.routes["/files/encoder.pth"] = Route(saved(trunk_state()))  # republished since
    second = load_encoder(url).weights["checkpoint"]
    assert second.path == first.path and second.sha256 != first.sha256
    assert recorded_sha256(second.path) == second.sha256


def test_a_killed_download_leaves_nothing_taken_and_is_cleared(mirror, cache):
    cache.mkdir(parents=True)
    (cache / ".releases_models.zip.k1ll3d.partial").write_bytes(b"PK half")
    load_encoder("hvc-ytb")
    assert not [name for name in listing(cache) if name.endswith(".partial")]


def test_the_default_encoder_downloads_nothing(mirror, cache):
    load_encoder()
    assert mirror.requests == [] and not cache.exists()


def test_a_model_given_in_the_wrong_role_is_refused():
    with pytest.raises(OptionError, match=r"checkpoint 'moco-v1': MoCo-v1 ResNet-50 .* is fused"):
        load_encoder("moco-v1")
    with pytest.raises(OptionError, match=r"moco 'hvc-ytb': the authors' HVC .* not the MoCo"):
        load_encoder(None, moco="hvc-ytb")


def test_a_name_that_is_not_a_file_nor_a_model_lists_the_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HvcError, match=r"hvc-ytv: checkpoint not found .*hvc-ytb, hvc-coco"):
        load_encoder("hvc-ytv")


def test_a_local_file_of_the_same_name_wins(published, mirror, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    Path("hvc-ytb").write_bytes(published["member"])
    loaded = load_encoder("hvc-ytb")
    assert loaded.description == "official-format checkpoint hvc-ytb" and not mirror.requests


def test_the_registry_lists_the_published_files():
    hvc = [MODELS[f"hvc-{name}"] for name in ("ytb", "coco", "voc", "msra")]
    assert {m.download.urls for m in hvc} == {
        (
            "https://github.com/PGSmall/HVC/releases/download/v0.1/releases_models.zip",
            "https://github.com/Anonymous-SSVOS/HVC/releases/download/v0.1/releases_models.zip",
        )
    }
    assert [m.member for m in hvc] == ["hvc_ytb.pth", "hvc_coco.pth", "hvc_voc.pth", "hvc_msra.pth"]
    moco = MODELS["moco-v1"]
    assert moco.download.urls == (
        "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v1_200ep/"
        "moco_v1_200ep_pretrain.pth.tar",
    )
    assert (moco.download.checksum.algorithm, moco.download.checksum.prefix) == ("md5", "b251726a")


def test_the_cache_folders_follow_hvc_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("HVC_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert weights_folder() == tmp_path / "user" / ".cache" / "hvc" / "weights"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_folder() == tmp_path / "xdg" / "hvc" / "weights"
    monkeypatch.setenv("HVC_HOME", str(tmp_path / "hvc"))
    assert weights_folder() == tmp_path / "hvc" / "weights"
    assert demo.cache_dir() == tmp_path / "hvc" / f"demo-v{demo.DEMO_VERSION}"  # one home for both


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("HVC_OFFLINE", "maybe", "HVC_OFFLINE 'maybe': use 1"),
        ("HVC_DOWNLOAD_TIMEOUT", "0", "HVC_DOWNLOAD_TIMEOUT '0': must be a positive number"),
        ("HVC_WEIGHTS_URL", "ftp://mirror", "HVC_WEIGHTS_URL 'ftp://mirror': not an http(s)"),
    ],
)
def test_bad_settings_are_named(mirror, monkeypatch, cache, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    failure(fragment)
    assert listing(cache) == []


def unprivileged(command: list[str]) -> list[str]:
    """`command` without the power to write anywhere: root ignores folder permissions, so it
    runs in a user namespace of its own, where it does not."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("unshare") or subprocess.run(["unshare", "-U", "true"]).returncode:
        pytest.skip("running as root without user namespaces: permissions cannot be tested")
    return ["unshare", "-U", *command]


@pytest.mark.slow
def test_a_read_only_cache_folder(published, mirror, monkeypatch, cache):
    command = unprivileged([sys.executable, "-c", WORKER, "hvc-ytb"])
    cache.mkdir(parents=True)
    cache.chmod(0o555)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"error: {cache}: cannot write into the weights cache" in done.stderr
    assert "HVC_HOME" in done.stderr and mirror.requests == [] and listing(cache) == []
    cache.chmod(0o755)
    load_encoder("hvc-ytb")
    cache.chmod(0o555)  # a cache filled once, then read-only: reading needs no writing
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == published["sha"] and mirror.requests == [ZIP]


@pytest.mark.slow
def test_two_processes_at_once_download_once(published, mirror, tmp_path):
    """The server holds the download back until one process says it waits for the other."""
    hold = threading.Event()
    mirror.routes[ZIP].hold = hold
    logs = [tmp_path / f"{k}.log" for k in range(2)]
    processes = []
    for log in logs:
        with open(log, "w") as stderr:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, "hvc-ytb"],
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
            )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any("waiting for" in p.read_text() for p in logs):
        time.sleep(0.1)
    hold.set()
    printed = [process.communicate(timeout=240)[0].strip() for process in processes]
    errors = [log.read_text() for log in logs]
    assert [p.returncode for p in processes] == [0, 0], errors
    assert printed == [published["sha"]] * 2
    assert mirror.requests == [ZIP]
    assert sum("waiting for another hvc weights download (process" in e for e in errors) == 1


def test_hvc_run_takes_names_and_urls_and_records_them(published, mirror, clip, tmp_path):
    video, mask = clip
    out = tmp_path / "out"
    moco_url = mirror.url("/files/moco.pth.tar")
    names = ["--checkpoint", "hvc-ytb", "--moco", moco_url]
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--device", "cpu", *names])
    assert code == 0, stderr
    moco_sha = hashlib.sha256(published["moco"]).hexdigest()
    description = (
        f"official-format checkpoint hvc-ytb (sha256 {published['sha']}) fused with MoCo-v1 "
        f"ResNet-50 {moco_url} (sha256 {moco_sha})"
    )
    assert f"encoder: {description}" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["encoder"].startswith(description)
    assert summary["weights"]["checkpoint"]["name"] == "hvc-ytb"
    assert summary["weights"]["checkpoint"]["sha256"] == published["sha"]
    assert summary["weights"]["moco"]["sha256"] == moco_sha
    code, _, stderr = run_cli(run_app, [video, mask, "--checkpoint", "moco-v1"])
    assert_one_line_error(code, stderr, "--checkpoint moco-v1: MoCo-v1 ResNet-50")


def test_hvc_export_and_hvc_eval_take_names_at_the_command_line(published, mirror, tmp_path):
    from hvc_export.cli import app as export_app
    from hvc_runtime.cli import eval_app
    from tests.test_davis import make_dataset_with_frames

    out = tmp_path / "enc.pt"
    shapes = ["--min-shape", "64x64", "--opt-shape", "64x96", "--max-shape", "128x160"]
    code, _, stderr = run_cli(
        export_app, ["hvc-ytb", "--format", "torchscript", "--out", out, *shapes]
    )
    assert code == 0, stderr
    assert read_manifest(out).weights["checkpoint"]["name"] == "hvc-ytb"

    make_dataset_with_frames(tmp_path / "davis", ["a"])
    results = tmp_path / "results"
    args = [results, "--davis", tmp_path / "davis", "--run", "--device", "cpu"]
    code, _, stderr = run_cli(eval_app, [*args, "--checkpoint", "hvc-ytb"])
    assert code == 0, stderr
    assert f"official-format checkpoint hvc-ytb (sha256 {published['sha']})" in stderr


def test_hvc_run_help_lists_the_names():
    code, stdout, _ = run_cli(run_app, ["--help"])
    text = " ".join(stdout.split())
    assert code == 0 and all(name in text for name in MODELS)


def test_the_python_api_takes_names(published, mirror):
    segmenter = Segmenter.from_checkpoint("hvc-ytb", device="cpu")
    assert segmenter.source.weights["checkpoint"].sha256 == published["sha"]


def test_hvc_export_records_the_model(published, mirror, tmp_path, monkeypatch):
    out = tmp_path / "enc.pt"
    small = ShapeRange((64, 64), (64, 96), (128, 160))
    export(ExportRequest("hvc-ytb", "torchscript", out, shapes=small))
    manifest = read_manifest(out)
    assert manifest.weights == {
        "checkpoint": {
            "name": "hvc-ytb",
            "path": str(weights_folder() / "hvc_ytb.pth"),
            "sha256": published["sha"],
        }
    }
    assert manifest.source_sha256 == published["sha"]
    assert default_artifact_path("hvc-ytb", "onnx", "fp32") == Path("hvc-ytb-fp32.onnx")
    url = mirror.url("/files/encoder.pth")
    assert default_artifact_path(url, "onnx", "fp16") == Path("encoder-fp16.onnx")
    assert remote_weights(url, "checkpoint").stem == "encoder"
