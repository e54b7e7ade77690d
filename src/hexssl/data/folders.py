"""In-memory image-folder readers (small datasets), from a directory or a .tar/.tar.gz.

Layout: ``<root>/<split>/<class>/*.jpg|jpeg|png|...`` plus an optional ``<root>/hierarchy.csv``
with rows ``class,superclass[,name]`` that gives superlabels. ``root`` may also be a .tar or
.tar.gz archive holding that tree (under one top-level folder or none); members are streamed,
never extracted to disk.

Every image is decoded once (JPEGs with libjpeg-turbo through kornia_rs when available,
the rest with Pillow), resized in batches with torch's uint8 antialiased bilinear kernel
(identical to Pillow's BILINEAR), and the uint8 tensor is cached under
:func:`~hexssl.data.base.cache_dir`, keyed by the source's path, size and mtime, the split,
the image size and the class list.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tarfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from hexssl.data.base import DataError, TensorImageDataset, cache_dir, missing_dataset_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
FOLDER_LAYOUT = (
    "<root>/<split>/<class>/*.jpg|png, optional <root>/hierarchy.csv; root may be a .tar.gz"
)
CACHE_VERSION = 3  # 3: classes without images are not counted
_CHUNK = 256  # images per decode task


# ----------------------------------------------------------------------- decoding
def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, P, CMYK, RGBA, I;16...) to RGB; alpha is dropped."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids Pillow's palette-transparency warning
    return img.convert("RGB")


def _load_turbo() -> Callable[[bytes, str], np.ndarray] | None:
    """kornia_rs's libjpeg-turbo decoder (a dependency of hexssl): ~3x faster than Pillow."""
    try:
        from kornia_rs.io import decode_image_jpegturbo
    except ImportError:
        return None
    fn: Callable[[bytes, str], np.ndarray] = decode_image_jpegturbo
    return fn


_TURBO = _load_turbo()


def decode_native(data: bytes) -> np.ndarray | None:
    """Decode bytes to an (H, W, 3) uint8 array at native size; ``None`` if unreadable.

    JPEGs go through libjpeg-turbo when available; everything else, and any JPEG it
    rejects (CMYK, unusual markers), through Pillow with :func:`to_rgb`.
    """
    if _TURBO is not None and data[:2] == b"\xff\xd8":
        try:
            arr = _TURBO(data, "rgb")
            if arr.ndim == 3 and arr.shape[2] == 3:
                return arr
        except Exception:
            pass  # let Pillow have a go
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(to_rgb(img), dtype=np.uint8)
    except Exception:  # any decoder failure means "corrupt file": skipped and counted
        return None


def resize_square(arrays: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Centre-crop to squares and resize to ``size`` (antialiased bilinear), batched by shape.

    Shape:
        arrays: (H_i, W_i, 3) uint8 each -> (size, size, 3) uint8 each
    """
    out: list[np.ndarray] = list(arrays)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(arrays):
        if a.shape != (size, size, 3):
            by_shape.setdefault(a.shape, []).append(i)
    for (h, w, _), idx in by_shape.items():
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(
            0, 3, 1, 2
        )  # channels-last
        x = x[..., top : top + side, left : left + side]  # (n, 3, side, side) uint8
        # uint8 channels-last antialiased bilinear has a fast SIMD kernel (PIL's BILINEAR filter)
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        y = x.permute(0, 2, 3, 1).numpy()  # (n, size, size, 3)
        for j, i in enumerate(idx):
            out[i] = y[j]
    return out


def decode_image(source: bytes | str, image_size: int | None = None) -> np.ndarray | None:
    """Decode one file (path or bytes) to an (H, W, 3) uint8 array; ``None`` if unreadable.

    Shape:
        returns: (image_size, image_size, 3) when ``image_size`` is set, else native (H, W, 3).
    """
    return decode_chunk([source], image_size)[0]


def _read(source: bytes | str) -> bytes | None:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError:
        return None


def decode_chunk(sources: Sequence[bytes | str], image_size: int | None) -> list[np.ndarray | None]:
    """Decode a chunk of files, then resize the readable ones together (see resize_square)."""
    arrays = [d if (d := _read(s)) is None else decode_native(d) for s in sources]
    if image_size is None:
        return arrays
    good = [i for i, a in enumerate(arrays) if a is not None]
    resized = resize_square([arrays[i] for i in good], image_size)  # type: ignore[misc]
    for i, a in zip(good, resized):
        arrays[i] = a
    return arrays


def decode_many(
    sources: Sequence[bytes | str], image_size: int | None, workers: int | None = None
) -> list[np.ndarray | None]:
    """Decode in chunks, on a thread pool when ``workers`` > 1 (default: 1).

    Threads give little here: decoding small images is dominated by Python-side work
    that holds the GIL (measured: 2 threads no faster than 1 on tiny-imagenet).
    """
    chunks = [sources[i : i + _CHUNK] for i in range(0, len(sources), _CHUNK)]
    workers = workers or 1

    def run(chunk: Sequence[bytes | str]) -> list[np.ndarray | None]:
        return decode_chunk(chunk, image_size)

    if workers == 1 or len(chunks) <= 1:
        return [a for c in chunks for a in run(c)]
    with ThreadPoolExecutor(workers) as pool:
        return [a for c in pool.map(run, chunks) for a in c]


# ----------------------------------------------------------------------- scanning
@dataclass(frozen=True)
class Entry:
    """One image found in a folder or archive: class folder ('' if none) and its source."""

    klass: str
    name: str
    source: bytes | str


def is_image(name: str) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_archive(path: Path) -> bool:
    """True for .tar, .tar.gz and .tgz files."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def scan_dir(top: Path, labelled: bool) -> list[Entry]:
    """Image files under ``top`` (recursive); class = first folder below ``top`` if labelled."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel = Path(dirpath).relative_to(top).parts
        if labelled and not rel:
            continue  # files directly in <split>/ have no class
        for f in sorted(filenames):
            if is_image(f):
                entries.append(
                    Entry(rel[0] if labelled else "", f"{dirpath}/{f}", f"{dirpath}/{f}")
                )
    return entries


def _match(parts: tuple[str, ...], split: str | None) -> tuple[tuple[str, ...], str] | None:
    """(prefix, class) when ``parts`` is <prefix>/<split>/<class>/.../<file>."""
    if split is None:
        return (), ""
    for i, p in enumerate(parts[:-2]):
        if p == split:
            return parts[:i], parts[i + 1]
    return None


def scan_tar(path: Path, split: str | None) -> tuple[list[Entry], tuple[bytes, str] | None]:
    """Stream a tar(.gz) once: image members of ``split`` (all images if None) and hierarchy.csv.

    The tree root inside the archive is the prefix of the first matching image, so an
    archive with or without one top-level folder both work.
    """
    entries: list[Entry] = []
    csvs: dict[tuple[str, ...], tuple[bytes, str]] = {}  # folder -> (bytes, source)
    prefix: tuple[str, ...] | None = None
    try:
        with tarfile.open(path, "r|*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                parts = tuple(p for p in PurePosixPath(m.name).parts if p not in (".", ""))
                if parts[-1] == "hierarchy.csv":
                    data = _read_member(tf, m)
                    csvs[parts[:-1]] = data, f"{path}:{m.name}"
                elif is_image(parts[-1]) and (hit := _match(parts, split)) is not None:
                    prefix = hit[0] if prefix is None else prefix
                    if hit[0] == prefix:
                        entries.append(Entry(hit[1], m.name, _read_member(tf, m)))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path}: not a readable .tar/.tar.gz archive ({type(err).__name__}: {err}); "
            "it may be truncated or of another format: download or create it again"
        ) from None
    entries.sort(key=lambda e: e.name)  # archive member order is arbitrary
    return entries, csvs.get(prefix or (), csvs.get(()))


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    f = tf.extractfile(m)
    return b"" if f is None else f.read()


HEADER = ["class", "superclass"]
_HEADER_WORDS = frozenset({"class", "superclass", "super", "name", "class_name", "label"})


def read_hierarchy(data: bytes, source: str) -> dict[str, str]:
    """Decode the bytes of a hierarchy.csv (UTF-8, with or without BOM) and parse them."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{source}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
            'save it as UTF-8 ("CSV UTF-8" in spreadsheet programs)'
        ) from None
    return parse_hierarchy(text, source)


def parse_hierarchy(text: str, source: str = "hierarchy.csv") -> dict[str, str]:
    """``class,superclass[,name]`` rows -> {class: superclass}.

    Reads what spreadsheet programs write (a UTF-8 BOM, CRLF line ends, quoted cells).
    An optional header must read ``class,superclass[,name]``; lines starting with ``#``
    are comments. Refuses rows of another width, empty cells and a class given two
    different superclasses (DataError naming the line).

    Example:
        >>> parse_hierarchy("class,superclass\\r\\ncat,animal\\r\\n")
        {'cat': 'animal'}
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    rows = [(reader.line_num, [c.strip() for c in r]) for r in reader]
    rows = [(n, r) for n, r in rows if any(r) and not r[0].startswith("#")]
    if rows and _is_header(rows[0][1], source):
        rows = rows[1:]
    out: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for line, row in rows:
        _check_row(row, line, source)
        klass, sup = row[0], row[1]
        if out.get(klass, sup) != sup:
            raise DataError(
                f"{source} line {line}: class {klass!r} has superclass {sup!r}, but line "
                f"{line_of[klass]} gives {out[klass]!r}; keep one row per class"
            )
        out[klass], line_of[klass] = sup, line_of.get(klass, line)
    return out


def _is_header(row: list[str], source: str) -> bool:
    """True for the header ``class,superclass[,name]``; any other header is refused."""
    lower = [c.lower() for c in row]
    if lower[:2] == HEADER and len(row) <= 3:
        return True
    if _HEADER_WORDS & set(lower):
        raise DataError(
            f"{source} line 1: header {','.join(row)!r} is not 'class,superclass[,name]'; "
            "rename its columns to that order (or drop the header row)"
        )
    return False


def _check_row(row: list[str], line: int, source: str) -> None:
    if len(row) not in (2, 3) or not row[0] or not row[1]:
        raise DataError(
            f"{source} line {line}: {row} is not a row 'class,superclass[,name]' "
            "(two or three cells, class and superclass not empty)"
        )


# ------------------------------------------------------------------------ labelling
def assign_labels(
    entries: Sequence[Entry], hierarchy: dict[str, str], classes: Sequence[str] | None
) -> tuple[Tensor, Tensor, list[str], list[str]]:
    """Labels (sorted class names, like ImageFolder) and superlabels from the hierarchy.

    Shape:
        returns: labels (N,), superlabels (N,), class_names, superclass_names
    """
    found = {e.klass for e in entries if e.klass}
    class_names = list(classes) if classes is not None else sorted(found)
    if hierarchy and found:  # unlabeled trees have no class folders to match
        _warn_mismatch(found, hierarchy, classes is None)
    super_names = sorted({hierarchy[c] for c in class_names if c in hierarchy})
    class_idx = {c: i for i, c in enumerate(class_names)}
    super_of_class = [
        super_names.index(hierarchy[c]) if c in hierarchy else -1 for c in class_names
    ]
    unknown = sorted(found - set(class_idx))
    if unknown:
        warnings.warn(
            f"classes {unknown[:5]} are not in the class list; their labels are -1", stacklevel=3
        )
    labels = torch.tensor([class_idx.get(e.klass, -1) for e in entries], dtype=torch.long)
    lookup = torch.tensor([*super_of_class, -1], dtype=torch.long)  # index -1 -> -1
    return labels, lookup[labels], class_names, super_names


def _warn_mismatch(found: set[str], hierarchy: dict[str, str], train: bool) -> None:
    """Name class folders missing from hierarchy.csv, and (train split) listed classes
    without images, which are not counted as classes."""
    unlisted = sorted(found - set(hierarchy))
    if unlisted:
        warnings.warn(
            f"{len(unlisted)} class folder(s) missing from hierarchy.csv get no superclass "
            f"(-1): {unlisted[:10]}; add a row 'class,superclass' for each",
            stacklevel=4,
        )
    empty = sorted(set(hierarchy) - found)
    if empty and train:
        warnings.warn(
            f"hierarchy.csv lists {len(empty)} class(es) with no images, not counted as "
            f"classes: {empty[:10]}",
            stacklevel=4,
        )


def stack_decoded(arrays: list[np.ndarray | None], names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Stack decoded arrays into (N, 3, H, W) uint8; returns (images, kept mask).

    Unreadable files (``None``) are dropped with one warning that counts them.
    """
    keep = torch.tensor([a is not None for a in arrays], dtype=torch.bool)
    good = [a for a in arrays if a is not None]
    bad = [n for n, a in zip(names, arrays) if a is None]
    if bad and good:
        warnings.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[:3]}", stacklevel=3)
    if not good:
        raise DataError(
            f"no readable images among {len(arrays)} file(s), e.g. {list(names[:3])}; "
            f"every file failed to decode (check they are {'/'.join(IMAGE_EXTENSIONS)} images)"
        )
    sizes = {a.shape for a in good}
    if len(sizes) > 1:
        raise ValueError(
            f"images have different sizes {sorted(sizes)[:3]}; "
            "pass image_size=... to resize them at load time"
        )
    return torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2).contiguous(), keep  # (N, 3, H, W)


# -------------------------------------------------------------------------- caching
def _cache_file(tag: str, key: object) -> Path:
    digest = hashlib.sha1(repr((CACHE_VERSION, key)).encode()).hexdigest()[:16]
    return cache_dir() / f"{tag}-{digest}.pt"


def _source_key(root: Path, entries: Sequence[Entry] | None) -> object:
    """Cache key of a data source: paths, sizes and mtimes.

    An archive is keyed by its own stat; a directory by every listed file and hierarchy.csv.
    """
    if entries is None:
        st = root.stat()
        return (str(root.resolve()), st.st_size, st.st_mtime_ns)
    files = [e.name for e in entries] + [str(h) for h in [root / "hierarchy.csv"] if h.is_file()]
    stats = [(f, (st := os.stat(f)).st_size, st.st_mtime_ns) for f in files]
    return (str(root.resolve()), hashlib.sha1(repr(stats).encode()).hexdigest())


def load_cached(path: Path) -> TensorImageDataset | None:
    """The dataset saved at ``path``, or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        d = torch.load(path, weights_only=True)
        ds = TensorImageDataset(
            d["images"], d["labels"], d["superlabels"], d["class_names"], d["superclass_names"],
            int(d["num_skipped"]),
        )  # fmt: skip
    except Exception as err:  # a stale or truncated cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {path}: {err}", stacklevel=2)
        return None
    if ds.num_skipped:  # said once per load: here, or by stack_decoded when decoding
        warnings.warn(
            f"skipped {ds.num_skipped} unreadable image(s) (found when the decoded cache "
            f"{path.name} was built)",
            stacklevel=2,
        )
    return ds


def save_cached(path: Path, ds: TensorImageDataset) -> None:
    """Save atomically (tmp file then rename); failures only warn."""
    d = {
        "images": ds.images, "labels": ds.labels, "superlabels": ds.superlabels,
        "class_names": ds.class_names, "superclass_names": ds.superclass_names,
        "num_skipped": ds.num_skipped,
    }  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(d, tmp)
        os.replace(tmp, path)
        size = path.stat().st_size / 1e6
        print(
            f"[hexssl] cached the decoded images: {path} ({size:.0f} MB; HEXSSL_CACHE=DIR moves it)"
        )
    except OSError as err:
        warnings.warn(f"could not write dataset cache {path}: {err}", stacklevel=2)


# --------------------------------------------------------------------- in-memory readers
def _scan(root: Path, split: str | None) -> tuple[list[Entry], dict[str, str]]:
    """Entries and hierarchy of a directory or archive; FileNotFoundError if there are none."""
    if not root.exists():
        raise FileNotFoundError(
            f"imagefolder: no such file or folder: {root} (data.root; expected {FOLDER_LAYOUT})"
        )
    if is_archive(root):
        entries, csv_file = scan_tar(root, split)
    else:
        top = root / split if split is not None else root
        entries = scan_dir(top, labelled=split is not None) if top.is_dir() else []
        hfile = root / "hierarchy.csv"
        csv_file = (hfile.read_bytes(), str(hfile)) if hfile.is_file() else None
    if not entries:
        where = f"{root}/{split}" if split is not None else str(root)
        layout = FOLDER_LAYOUT if split is not None else "a folder or archive of images"
        raise missing_dataset_error("imagefolder", Path(where), layout, download=False)
    return entries, read_hierarchy(*csv_file) if csv_file else {}


def _load_folder(
    root: Path, split: str | None, image_size: int | None, classes: Sequence[str] | None,
    cache: bool, workers: int | None,
) -> TensorImageDataset:  # fmt: skip
    """Shared body of the imagefolder and unlabeled readers (scan, cache, decode)."""
    key_base = (split, image_size, tuple(classes) if classes is not None else None)
    cfile = (
        _cache_file(root.name, (_source_key(root, None), key_base)) if is_archive(root) else None
    )
    if cache and cfile is not None and (hit := load_cached(cfile)) is not None:
        return hit
    entries, hierarchy = _scan(root, split)
    if cache and cfile is None:
        cfile = _cache_file(root.name, (_source_key(root, entries), key_base))
        if (hit := load_cached(cfile)) is not None:
            return hit
    labels, superlabels, class_names, super_names = assign_labels(entries, hierarchy, classes)
    if split is None:
        class_names, labels, superlabels = [], labels.fill_(-1), superlabels.fill_(-1)
    arrays = decode_many([e.source for e in entries], image_size, workers)
    images, keep = stack_decoded(arrays, [e.name for e in entries])
    ds = TensorImageDataset(
        images, labels[keep], superlabels[keep], class_names, super_names, int((~keep).sum())
    )
    if cache and cfile is not None:
        save_cached(cfile, ds)
    return ds


def read_imagefolder(
    root: str | Path,
    split: str = "train",
    image_size: int | None = None,
    classes: Sequence[str] | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> TensorImageDataset:
    """Read ``<root>/<split>/<class>/*`` (folder or .tar/.tar.gz) into memory.

    Args:
        root: the tree's root folder, or an archive holding it.
        split: sub-folder to read, e.g. "train" or "val".
        image_size: centre-crop and resize every image to this square size (e.g. 32).
        classes: fix the class order (pass the train split's ``class_names`` to the val
            split); default: sorted class folders plus the classes in hierarchy.csv.
        cache: read/write the decoded tensor under :func:`~hexssl.data.base.cache_dir`.
        workers: decoding threads (default 1; see :func:`decode_many`).

    Example:
        >>> ds = read_imagefolder("../shared/data/cifar10-jpeg.tar.gz", "val")  # doctest: +SKIP
        >>> ds.images.shape, ds.superclass_names  # doctest: +SKIP
        (torch.Size([10000, 3, 32, 32]), ['animal', 'vehicle'])
    """
    return _load_folder(Path(root).expanduser(), split, image_size, classes, cache, workers)


def read_unlabeled(
    root: str | Path,
    split: str = "train",
    image_size: int | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> TensorImageDataset:
    """Every image under ``root`` (recursive; folder or archive), labels -1.

    ``split`` must be "train", "unlabeled" or "all"; all three read the whole folder.
    """
    if split not in ("train", "unlabeled", "all"):
        raise ValueError(f"split {split!r}: an unlabeled folder has only 'train'/'unlabeled'/'all'")
    return _load_folder(Path(root).expanduser(), None, image_size, None, cache, workers)
