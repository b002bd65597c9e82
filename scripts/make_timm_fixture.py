"""Make a timm-layout fixture: run ONCE in a side venv that has real timm.

    python3 -m venv /tmp/timmvenv
    /tmp/timmvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
    /tmp/timmvenv/bin/pip install timm safetensors pillow numpy
    /tmp/timmvenv/bin/python scripts/make_timm_fixture.py [MODEL [SIZE ...]]   # default: mobilevit_xxs 256 320

Writes tests/fixtures/timm_<MODEL>.safetensors: timm's own state dict of MODEL (fp16 weights,
made realistic with our fixture recipe), the uint8 photo crops it was run on at each SIZE, and
the logits timm produced for them. The main environment has no timm; tests load the state dict
through our checkpoint door and compare with timm's logits.
"""

import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mvit_deploy.inputs.calibration import photo_inputs  # noqa: E402
from mvit_deploy.models.config import TIMM_PREPROCESSING  # noqa: E402
from mvit_deploy.models.fixture import make_realistic  # noqa: E402

name = sys.argv[1] if len(sys.argv) > 1 else "mobilevit_xxs"
sizes = [int(s) for s in sys.argv[2:]] or [256, 320]
model = timm.create_model(name, pretrained=False, num_classes=1000)
make_realistic(model, model, model.head.fc, seed=7)
state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
model.load_state_dict(
    {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
)  # run the fp16-rounded weights
model.eval()

out = {f"model.{k}": v.contiguous() for k, v in state.items()}
for size in sizes:
    x = photo_inputs("eval", size, TIMM_PREPROCESSING, crops_per_photo=1)  # [4, 3, S, S] in [0, 1]
    pixels = np.rint(x * 255).astype(np.uint8)
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels.astype(np.float32) / 255))
    out[f"pixels_{size}"] = torch.from_numpy(pixels)
    out[f"logits_{size}"] = logits
    print(size, "logit std", logits.std().item())
meta = {
    "timm": timm.__version__,
    "torch": torch.__version__,
    "model": name,
    "seed": "7",
    "sizes": ",".join(map(str, sizes)),
}
save_file(out, str(ROOT / f"tests/fixtures/timm_{name}.safetensors"), metadata=meta)
print("keys", [k for k in state][:8])
