"""Make the timm-layout fixture: run ONCE in a side venv that has real timm.

    python3 -m venv /tmp/timmvenv
    /tmp/timmvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm safetensors pillow numpy
    /tmp/timmvenv/bin/python scripts/make_timm_fixture.py

Writes tests/fixtures/timm_mobilevit_xxs.safetensors: timm's own ``mobilevit_xxs`` state
dict (fp16 weights, made realistic with our fixture recipe), the uint8 photo crops it
was run on, and the logits timm produced for them. The main environment has no timm;
tests load the state dict through our checkpoint door and compare with timm's logits.
"""

import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mvit_deploy.calibration import photo_inputs  # noqa: E402
from mvit_deploy.models.config import TIMM_PREPROCESSING  # noqa: E402
from mvit_deploy.models.fixture import make_realistic  # noqa: E402

model = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=1000)
make_realistic(model, model, model.head.fc, seed=7)
state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})  # run the fp16-rounded weights
model.eval()

out = {f"model.{k}": v.contiguous() for k, v in state.items()}
for size in (256, 320):
    x = photo_inputs("eval", size, TIMM_PREPROCESSING, crops_per_photo=1)  # [4, 3, S, S] in [0, 1]
    pixels = np.rint(x * 255).astype(np.uint8)
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels.astype(np.float32) / 255))
    out[f"pixels_{size}"] = torch.from_numpy(pixels)
    out[f"logits_{size}"] = logits
    print(size, "logit std", logits.std().item())
meta = {"timm": timm.__version__, "torch": torch.__version__, "model": "mobilevit_xxs", "seed": "7"}
save_file(out, str(ROOT / "tests/fixtures/timm_mobilevit_xxs.safetensors"), metadata=meta)
print("keys", [k for k in state][:8])
