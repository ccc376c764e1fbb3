"""Frame sources, mask reading/writing, and the background writers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from hvc_runtime.io.frames import ImageFolderSource, VideoFileSource, open_frames
from hvc_runtime.io.masks import davis_palette, read_mask, write_palette_png
from hvc_runtime.io.prefetch import (
    decode_jpeg_batches,
    is_jpeg_folder,
    prefetch,
    quiet_torchvision_io,
)
from hvc_runtime.io.writers import BackgroundWorker, MaskFolderWriter, OverlayVideoWriter
from hvc_runtime.utils.errors import HvcError
from tests.conftest import DAVIS2016, SHARED_DATA, smooth_texture, write_video


def test_video_file_is_decoded_frame_by_frame(tmp_path):
    frames = [smooth_texture(48, 64, seed=s) for s in range(6)]
    write_video(tmp_path / "clip.mp4", frames)
    source = open_frames(tmp_path / "clip.mp4")
    assert isinstance(source, VideoFileSource)
    assert (source.height, source.width, source.length) == (48, 64, 6)
    decoded = list(source)
    assert [f.name for f in decoded] == [f"{i:05d}" for i in range(6)]
    # lossy codec: close to the original, in RGB order
    assert np.abs(decoded[2].rgb.astype(int) - frames[2]).mean() < 12
    assert source.fps == pytest.approx(10.0)


def test_image_folder_in_name_order(tmp_path):
    for name, seed in [("00002", 2), ("00000", 0), ("00001", 1)]:
        Image.fromarray(smooth_texture(16, 24, seed=seed)).save(tmp_path / f"{name}.png")
    source = open_frames(tmp_path)
    assert isinstance(source, ImageFolderSource)
    frames = list(source)
    assert [f.name for f in frames] == ["00000", "00001", "00002"]
    assert np.array_equal(frames[1].rgb, smooth_texture(16, 24, seed=1))


def test_bad_video_inputs(tmp_path):
    with pytest.raises(HvcError, match=r"missing\.mp4: no such video"):
        open_frames(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(HvcError, match=r"junk\.mp4: (cannot open|video has no decodable)"):
        open_frames(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HvcError, match="folder holds no images"):
        open_frames(empty)


def test_truncated_frame_in_folder(tmp_path):
    Image.fromarray(smooth_texture(16, 24)).save(tmp_path / "00000.jpg")
    data = (tmp_path / "00000.jpg").read_bytes()
    (tmp_path / "00001.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(HvcError, match=r"00001\.jpg: not a readable image"):
        list(open_frames(tmp_path))


def test_mask_formats(tmp_path):
    ids = np.zeros((10, 12), np.uint8)
    ids[2:5, 3:7] = 3
    ids[6:9, 1:4] = 27
    write_palette_png(tmp_path / "p.png", ids)
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert np.array_equal(read_mask(tmp_path / "p.png"), ids)
    Image.fromarray(ids, mode="L").save(tmp_path / "grey.png")
    assert np.array_equal(read_mask(tmp_path / "grey.png"), ids)
    Image.fromarray((ids > 0).astype(np.uint8) * 255, mode="L").save(tmp_path / "davis16.png")
    assert np.array_equal(read_mask(tmp_path / "davis16.png"), (ids > 0).astype(np.uint8))


def test_bad_masks(tmp_path):
    Image.fromarray(smooth_texture(8, 8)).save(tmp_path / "rgb.png")
    with pytest.raises(HvcError, match=r"rgb\.png: RGB image is not an id mask"):
        read_mask(tmp_path / "rgb.png")
    write_palette_png(tmp_path / "ok.png", np.ones((32, 32), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(HvcError, match=r"cut\.png: not a readable mask"):
        read_mask(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(HvcError, match=r"text\.png: not a readable mask"):
        read_mask(tmp_path / "text.png")
    with pytest.raises(HvcError, match=r"none\.png: mask not found"):
        read_mask(tmp_path / "none.png")


@pytest.mark.realdata
def test_palette_matches_davis_annotations():
    sample = SHARED_DATA / "first_frame_only" / "davis2017-bmx-trees" / "Annotations" / "00000.png"
    assert Image.open(sample).getpalette() == list(davis_palette())
    assert read_mask(DAVIS2016 / "Annotations" / "480p" / "blackswan" / "00000.png").max() == 1


def test_writers_commit_atomically(tmp_path):
    worker = BackgroundWorker()
    masks = MaskFolderWriter(tmp_path / "masks", worker)
    video = OverlayVideoWriter(tmp_path / "overlay.mp4", 8.0, worker)
    frames = [smooth_texture(40, 48, seed=s) for s in range(4)]
    for k, frame in enumerate(frames):
        ids = np.zeros((40, 48), np.uint8)
        ids[5:20, 5 + k : 25 + k] = 1
        masks.write(f"{k:05d}", ids)
        video.write(frame, ids)
    assert not (tmp_path / "masks").exists() and not (tmp_path / "overlay.mp4").exists()
    worker.close()
    masks.commit()
    video.commit()
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == [
        f"{k:05d}.png" for k in range(4)
    ]
    assert len(list(VideoFileSource(tmp_path / "overlay.mp4"))) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "overlay.mp4"]


def test_writer_errors_reach_the_caller(tmp_path):
    worker = BackgroundWorker()
    masks = MaskFolderWriter(tmp_path / "masks", worker)
    masks.write("bad", np.zeros((4, 4, 4, 4), np.uint8))  # not an image
    with pytest.raises(Exception):  # noqa: B017 - whatever PIL raises must surface here
        worker.close()
    masks.abort()
    assert list(tmp_path.iterdir()) == []


def test_prefetch_keeps_order_and_raises_at_the_broken_frame(tmp_path):
    for index in range(6):
        Image.fromarray(smooth_texture(16, 24, seed=index)).save(tmp_path / f"{index:05d}.png")
    source = ImageFolderSource(tmp_path)
    direct = [frame.rgb for frame in source]
    ahead = list(prefetch(source, depth=2))
    assert [frame.index for frame in ahead] == list(range(6))
    assert all(np.array_equal(a.rgb, b) for a, b in zip(ahead, direct, strict=True))
    (tmp_path / "00003.png").write_bytes(b"not a png")
    seen = []
    with pytest.raises(HvcError, match=r"00003\.png"):
        for frame in prefetch(source, depth=2):
            seen.append(frame.index)
    assert seen == [0, 1, 2]


def test_prefetch_stops_its_reader_when_the_consumer_stops(tmp_path):
    for index in range(20):
        Image.fromarray(smooth_texture(16, 24, seed=index)).save(tmp_path / f"{index:05d}.png")
    frames = prefetch(ImageFolderSource(tmp_path), depth=1)
    assert next(frames).index == 0
    frames.close()
    assert not any(t.name == "hvc-decoder" for t in threading.enumerate())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_prefetch_pins_frames_for_cuda(tmp_path):
    Image.fromarray(smooth_texture(16, 24)).save(tmp_path / "00000.png")
    (frame,) = prefetch(ImageFolderSource(tmp_path), torch.device("cuda"))
    assert frame.pixels.is_pinned() and np.array_equal(frame.pixels.numpy(), frame.rgb)


def _jpeg_folder(folder, count, size=(40, 56)):
    for index in range(count):
        image = Image.fromarray(smooth_texture(*size, seed=index))
        image.save(folder / f"{index:05d}.jpg", quality=90)
    return ImageFolderSource(folder)


def test_jpeg_batches_decode_every_frame_in_order(tmp_path):
    """The batched JPEG path (nvJPEG on CUDA) runs the same code on the CPU here: every frame,
    in order, across batch boundaries, matching a per-file decode exactly and PIL closely."""
    from torchvision.io import decode_jpeg, read_file

    source = _jpeg_folder(tmp_path, 11)
    frames = list(decode_jpeg_batches(source, torch.device("cpu"), batch=4))
    assert [f.index for f in frames] == list(range(11)) and frames[-1].name == "00010"
    for frame, pil in zip(frames, source, strict=True):
        with quiet_torchvision_io():
            single = decode_jpeg(read_file(str(source.files[frame.index]))).permute(1, 2, 0)
        assert torch.equal(frame.pixels, single)
        assert np.abs(frame.host_rgb().astype(int) - pil.rgb).max() <= 1  # the same libjpeg
    assert is_jpeg_folder(source) and not is_jpeg_folder(ImageFolderSource(_png(tmp_path)))


def _png(folder):
    other = folder / "png"
    other.mkdir()
    Image.fromarray(smooth_texture(16, 24)).save(other / "00000.png")
    return other


def test_jpeg_batches_nvjpeg_rejects_fall_back_to_the_cpu(tmp_path, monkeypatch):
    """A batch the GPU decoder rejects is decoded on the CPU, frame by frame (no GPU here: the
    device decode is made to fail as nvJPEG does on files it does not support)."""
    from hvc_runtime.io import prefetch

    real = prefetch.decode_jpeg

    def nvjpeg_rejects(data, mode, device=None):
        if device is not None:
            raise RuntimeError("nvjpegDecode failed: JPEG not supported")
        return real(data, mode=mode)

    monkeypatch.setattr(prefetch, "decode_jpeg", nvjpeg_rejects)
    source = _jpeg_folder(tmp_path, 5)
    frames = list(decode_jpeg_batches(source, torch.device("cpu"), batch=2))
    assert [f.index for f in frames] == list(range(5))
    for frame, pil in zip(frames, source, strict=True):
        assert np.abs(frame.host_rgb().astype(int) - pil.rgb).max() <= 1


def test_jpeg_batches_name_a_broken_or_resized_frame(tmp_path):
    source = _jpeg_folder(tmp_path, 5)
    source.files[3].write_bytes(b"not a jpeg")
    with pytest.raises(HvcError, match=r"cannot decode JPEG frames .*00003\.jpg"):
        list(decode_jpeg_batches(source, torch.device("cpu"), batch=2))
    Image.fromarray(smooth_texture(40, 64, seed=3)).save(source.files[3], quality=90)
    with pytest.raises(HvcError, match=r"00003\.jpg: frame size 64x40 differs"):
        list(decode_jpeg_batches(source, torch.device("cpu"), batch=2))
