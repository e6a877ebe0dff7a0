"""Real-looking inputs for the suite's models: crops of scikit-image's photographs and scanned
text, a speech-like signal, token ids. Every sample is a function of (kind, shape, dtype, index)
and a fixed seed, so a cache rebuilt anywhere holds the same arrays."""
import zlib

import numpy as np

_IMAGES = None
_TEXT = None


def _photos():
    global _IMAGES
    if _IMAGES is None:
        import skimage.data as d
        _IMAGES = [d.astronaut(), d.chelsea(), d.coffee(), d.rocket(), d.immunohistochemistry(),
                   d.hubble_deep_field(), np.stack([d.camera()] * 3, -1), np.stack([d.coins()] * 3, -1)]
    return _IMAGES


def _text_pages():
    global _TEXT
    if _TEXT is None:
        import skimage.data as d
        _TEXT = [d.text(), d.page()]
    return _TEXT


def _resize(img, h, w):
    from skimage.transform import resize
    return resize(img, (h, w), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def _crop(img, rng, aspect):
    """A random crop of `img` with width/height close to `aspect`, at least a third of its height."""
    H, W = img.shape[:2]
    h = int(rng.uniform(0.35, 1.0) * H)
    w = min(W, max(8, int(h * aspect)))
    h = min(H, max(8, int(w / aspect)))
    y = rng.integers(0, H - h + 1)
    x = rng.integers(0, W - w + 1)
    return img[y:y + h, x:x + w]


def image(shape, norm, index):
    """[N, C, H, W] from a crop of one of the photographs, normalized as the model expects."""
    n, c, h, w = shape
    rng = np.random.default_rng(1000 + index)
    out = np.empty(shape, np.float32)
    for b in range(n):
        photo = _photos()[(index * n + b) % len(_photos())]
        rgb = _resize(_crop(photo, rng, w / h), h, w)  # H, W, 3 in 0..255
        out[b] = _normalize(rgb, norm, c)
    return out


def page(shape, norm, index, turns=0):
    """A crop of scanned text placed over a photograph: what a text detector or layout model sees;
    turned by `turns` quarter turns (an orientation classifier's input)."""
    n, c, h, w = shape
    rng = np.random.default_rng(2000 + index)
    out = np.empty(shape, np.float32)
    for b in range(n):
        text = _text_pages()[(index + b) % 2].astype(np.float32)
        aspect = w / h if turns % 2 == 0 else h / w
        rgb = _resize(np.stack([np.rot90(_crop(text, rng, aspect), turns)] * 3, -1), h, w)
        if index % 2:
            photo = _resize(_crop(_photos()[index % len(_photos())], rng, w / h), h, w)
            rgb = 0.6 * rgb + 0.4 * photo
        out[b] = _normalize(rgb, norm, c)
    return out


def textline(shape, norm, index, turns=0):
    """One line of scanned text, resized to the recognizer's height (upside down for turns=2)."""
    n, c, h, w = shape
    rng = np.random.default_rng(3000 + index)
    out = np.empty(shape, np.float32)
    for b in range(n):
        text = _text_pages()[(index + b) % 2].astype(np.float32)
        H, W = text.shape
        lh = int(rng.integers(18, 40))
        y = int(rng.integers(0, H - lh))
        lw = min(W, int(lh * w / h))
        x = int(rng.integers(0, W - lw + 1))
        line = _resize(np.rot90(text[y:y + lh, x:x + lw], turns), h, w)
        out[b] = _normalize(np.stack([line] * 3, -1), norm, c)
    return out


def _normalize(rgb, norm, channels):
    x = rgb / 255.0
    if norm == "imagenet":
        x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    elif norm == "half":
        x = (x - 0.5) / 0.5
    elif norm == "unit255":
        x = rgb
    elif norm == "caffe":
        x = rgb[..., ::-1] - np.array([104.0, 117.0, 123.0])
    elif norm == "gray":
        x = x.mean(-1, keepdims=True)
    x = np.transpose(x, (2, 0, 1)).astype(np.float32)
    return x[:channels] if channels <= x.shape[0] else np.repeat(x[:1], channels, 0)


def audio(shape, index):
    """A speech-like signal at 16 kHz: a voiced harmonic series with a moving pitch and an envelope,
    over noise; every other sample is mostly noise (a pause)."""
    n = int(np.prod(shape))
    rng = np.random.default_rng(4000 + index)
    t = (np.arange(n) + index * n) / 16000.0
    pitch = 120 + 40 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000.0
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    level = 0.3 if index % 2 == 0 else 0.02
    x = level * voiced + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32).reshape(shape)


def mel(shape, index):
    """A log-mel-like spectrogram: smooth over frequency and time, in Whisper's [-1, 1] range."""
    rng = np.random.default_rng(5000 + index)
    base = rng.standard_normal(shape).astype(np.float32)
    k = np.ones(9, np.float32) / 9
    base = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), -1, base)
    return np.clip(base * 2, -1, 1).astype(np.float32)


def tokens(shape, index, table=None):
    """Token ids: rows of `table` (sentences tokenized at export) when there is one, else ids drawn
    from a word-piece-like range."""
    if table is not None:
        row = table[index % len(table)][: shape[-1]]
        return np.broadcast_to(row, shape).astype(np.int64).copy()
    rng = np.random.default_rng(6000 + index)
    return rng.integers(1000, 5000, size=shape).astype(np.int64)


def make(kind, shape, dtype, index, tokens_table=None, name=""):
    if ":" in kind:
        family, norm = kind.split(":")
        if family == "page-turned":  # every quarter turn in turn
            value = page(shape, norm, index, turns=index % 4)
        elif family == "textline-flipped":  # every other line upside down
            value = textline(shape, norm, index, turns=2 * (index % 2))
        else:
            value = {"image": image, "page": page, "textline": textline}[family](shape, norm, index)
    elif kind == "audio":
        value = audio(shape, index)
    elif kind == "mel":
        value = mel(shape, index)
    elif kind == "tokens":
        value = tokens(shape, index, tokens_table)
    elif kind == "mask":
        value = (tokens(shape, index, tokens_table) != 0).astype(np.int64)
    elif kind in ("zeros", "zeros-int"):
        value = np.zeros(shape)
    elif kind == "ones-int":
        value = np.ones(shape)
    elif kind == "rate16k":
        value = np.array(16000)
    elif kind == "past":
        # Seeded by the input's name too: each layer's keys and values differ.
        salt = zlib.crc32(name.encode())
        value = np.random.default_rng([7000 + index, salt]).standard_normal(shape) * 0.5
    else:
        raise ValueError(f"unknown sample kind {kind}")
    return np.asarray(value).astype(dtype)
